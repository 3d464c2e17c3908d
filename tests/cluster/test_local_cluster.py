"""The local cluster scripts for real: PostgreSQL + MLflow (basic auth) + a 2-node Ray cluster.

Brings the stack up with cluster/local/up.sh in a private temporary state dir on
automatically chosen loopback ports, checks it, and always brings it down again.
About 1.5-2 minutes on 2 cores. Deselect with `-m "not cluster"`.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from _stack import LOCAL, VENV, assert_nothing_left, listeners, read_env_sh, stack_leftovers, stack_skip_reason

pytestmark = pytest.mark.cluster


def _http_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_local_cluster_up_check_down():
    reason = stack_skip_reason()
    if reason:
        pytest.skip(reason)

    # Under /tmp, 0711: PostgreSQL runs as its own OS user and must traverse to its data dir
    # (pytest's tmp_path lives under a 0700 directory).
    base = Path(tempfile.mkdtemp(prefix="seedlab-cluster-", dir="/tmp"))
    base.chmod(0o711)
    state = base / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "SEEDLAB_RAY", "PG"))}
    env.update(
        SEEDLAB_CLUSTER_STATE=str(state),
        SEEDLAB_VENV=str(VENV),
        SEEDLAB_PG_PORT="0",
        SEEDLAB_MLFLOW_PORT="0",
        SEEDLAB_RAY_PORT="0",
        SEEDLAB_RAY_DASHBOARD_PORT="0",
        SEEDLAB_RAY_WORKERS="1",
        SEEDLAB_RAY_WORKER_GPUS="1",  # logical GPU: exercises the GPU resource path without hardware
    )
    ports: set[int] = set()
    try:
        up = subprocess.run(["bash", str(LOCAL / "up.sh")], env=env, capture_output=True, text=True, timeout=300)
        print(up.stdout, up.stderr)
        for line in (state / "ports.env").read_text().splitlines() if (state / "ports.env").exists() else []:
            key, _, val = line.partition("=")
            if key.endswith("_PORT") or key.startswith("RAY_AGENT_PORT_"):
                ports.add(int(val))
        assert up.returncode == 0, f"up.sh failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"

        # PostgreSQL, MLflow and the Ray dashboard listen on loopback only. (Ray's GCS and
        # per-node agents bind the node address too: that is Ray's behaviour, see docs/cluster.md.)
        for key in ("PG_PORT", "MLFLOW_PORT", "RAY_DASHBOARD_PORT"):
            port = int(_port(state, key))
            addrs = {host for host, p in listeners().values() if p == port}
            assert addrs and addrs <= {"127.0.0.1"}, f"{key} listens on {addrs}"

        client = read_env_sh(state / "env.sh")
        for var in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_URI",
                    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "SEEDLAB_RAY_GCS_ADDRESS"):
            assert client.get(var), f"env.sh does not provide {var}"
        assert client["RAY_ADDRESS"].startswith("http://127.0.0.1:")
        assert client["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
        assert client["RAY_AUTH_MODE"] == "token"
        assert (state / "secrets" / "mlflow_password").stat().st_mode & 0o077 == 0
        assert client["MLFLOW_TRACKING_PASSWORD"] not in (state / "env.sh").read_text()
        assert client["MLFLOW_TRACKING_PASSWORD"] not in up.stdout + up.stderr
        run_env = {**env, **{k: v for k, v in client.items() if k.startswith(("RAY_", "MLFLOW_", "SEEDLAB_"))}}

        # Two Ray nodes.
        status = subprocess.run(
            [str(VENV / "bin" / "ray"), "status", "--address", client["SEEDLAB_RAY_GCS_ADDRESS"]],
            env={k: v for k, v in run_env.items() if k != "RAY_ADDRESS"}, capture_output=True, text=True, timeout=120,
        )
        active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        assert sum("node_" in ln for ln in active.splitlines()) == 2, status.stdout + status.stderr

        # MLflow refuses unauthenticated and wrongly authenticated requests.
        url = client["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/search?max_results=1"
        assert _http_status(url) == 401
        bad = base64.b64encode(f"{client['MLFLOW_TRACKING_USERNAME']}:wrong".encode()).decode()
        assert _http_status(url, {"Authorization": f"Basic {bad}"}) == 401
        good = base64.b64encode(
            f"{client['MLFLOW_TRACKING_USERNAME']}:{client['MLFLOW_TRACKING_PASSWORD']}".encode()
        ).decode()
        assert _http_status(url, {"Authorization": f"Basic {good}"}) == 200

        # The Jobs API refuses a client without the token ...
        no_token = {k: v for k, v in run_env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
        no_token["HOME"] = str(base)  # no ~/.ray/auth_token either
        denied = subprocess.run(
            [str(VENV / "bin" / "ray"), "job", "list"], env=no_token, capture_output=True, text=True, timeout=60
        )
        assert denied.returncode != 0 and "Authentication" in denied.stdout + denied.stderr

        # ... and with it (smoke.py): MLflow round trip (experiment, run, artifact through the
        # proxied store), then a trivial `ray job submit` job whose driver prints
        # ray.cluster_resources() and runs one task on the worker node that logs an MLflow run
        # with the credentials the node environment provides.
        smoke = subprocess.run(
            [sys.executable, str(LOCAL / "smoke.py"), "--min-nodes", "2"],
            env=run_env, capture_output=True, text=True, timeout=300,
        )
        print(smoke.stdout, smoke.stderr)
        assert smoke.returncode == 0, smoke.stdout[-4000:] + smoke.stderr[-4000:]
        assert "artifact summary/summary.json round-tripped" in smoke.stdout
        assert "logged from the Ray worker is readable" in smoke.stdout
        job_line = next(ln for ln in smoke.stdout.splitlines() if "`ray job submit` succeeded" in ln)
        assert "'seedlab_worker': 1.0" in job_line and "'GPU': 1.0" in job_line and "'CPU': 2.0" in job_line
        artifacts = list((state / "mlflow" / "artifacts").rglob("summary.json"))
        assert artifacts, "artifact did not land in the server-side artifact store"
    finally:
        down = subprocess.run(
            ["bash", str(LOCAL / "down.sh"), "--purge"], env=env, capture_output=True, text=True, timeout=180
        )
        print(down.stdout, down.stderr)
        leftovers = stack_leftovers(ports, base)
        shutil.rmtree(base, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(*leftovers)


def _port(state: Path, key: str) -> str:
    for line in (state / "ports.env").read_text().splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    raise KeyError(key)
