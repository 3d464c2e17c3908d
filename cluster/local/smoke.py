"""End-to-end smoke check of a running seedlab cluster (local stack or any other).

Run after sourcing the client environment:

    . .cluster/env.sh && .venv/bin/python cluster/local/smoke.py [--skip-ray-job]

Checks, printing one line per check (secrets are never printed):
  1. MLflow refuses requests without credentials and with a wrong password (401);
  2. with MLFLOW_TRACKING_USERNAME/PASSWORD: create an experiment, log a run with
     params/metrics and a small JSON artifact, read the run and the artifact back
     through the server's proxied artifact store (mlflow-artifacts:/);
  3. Ray: the cluster has >= --min-nodes alive nodes, and a `ray job submit` job
     runs a task on a *worker* node (custom resource `seedlab_worker`) that logs an
     MLflow run using only the credentials the node environment provides.
Exit status 0 iff all checks pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

JOB_SCRIPT = textwrap.dedent(
    """
    import json, os, socket
    import ray

    ray.init()

    @ray.remote(num_cpus=0, resources={"seedlab_worker": 0.01})
    def log_from_worker(experiment_name):
        import mlflow
        mlflow.set_experiment(experiment_name)
        with mlflow.start_run(run_name="from-ray-worker") as run:
            mlflow.log_param("node_id", ray.get_runtime_context().get_node_id())
            mlflow.log_metric("answer", 42.0)
            mlflow.log_dict({"ok": True}, "worker/result.json")
        return {"run_id": run.info.run_id, "node_id": ray.get_runtime_context().get_node_id()}

    head_node = ray.get_runtime_context().get_node_id()
    nodes = [n for n in ray.nodes() if n["Alive"]]
    out = ray.get(log_from_worker.remote(os.environ["SMOKE_EXPERIMENT"]))
    out.update(driver_node=head_node, alive_nodes=len(nodes), resources=ray.cluster_resources())
    print("SMOKE_RESULT " + json.dumps(out, sort_keys=True))
    """
)


def _say(ok: bool, what: str) -> None:
    print(f"[smoke] {'PASS' if ok else 'FAIL'}: {what}", flush=True)
    if not ok:
        raise SystemExit(1)


def check_mlflow_unauthenticated(uri: str, user: str) -> None:
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    for label, headers in (
        ("no credentials", {}),
        ("wrong password", {"Authorization": "Basic " + _b64(f"{user}:not-the-password")}),
    ):
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
                code = resp.status
        except urllib.error.HTTPError as err:
            code = err.code
        _say(code == 401, f"MLflow request with {label} -> HTTP {code} (expected 401)")


def _b64(s: str) -> str:
    import base64

    return base64.b64encode(s.encode()).decode()


def check_mlflow_roundtrip(experiment_name: str) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp_id = client.create_experiment(experiment_name)
    exp = client.get_experiment(exp_id)
    _say(
        exp.artifact_location.startswith("mlflow-artifacts:"),
        f"created experiment {experiment_name!r} (id {exp_id}, artifacts {exp.artifact_location})",
    )
    payload = {"seed": 1234, "metric": 0.5, "nonce": uuid.uuid4().hex}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "summary.json"
        src.write_text(json.dumps(payload))
        mlflow.set_experiment(experiment_id=exp_id)
        with mlflow.start_run(run_name="smoke") as run:
            mlflow.log_param("seed", 1234)
            mlflow.log_metric("metric", 0.5, step=1)
            mlflow.log_artifact(str(src), artifact_path="summary")
        run_id = run.info.run_id
        got = client.get_run(run_id)
        _say(
            got.data.params.get("seed") == "1234" and got.data.metrics.get("metric") == 0.5,
            f"logged and read back run {run_id} (param seed, metric)",
        )
        names = [a.path for a in client.list_artifacts(run_id, "summary")]
        dst = Path(tmp) / "dl"
        dst.mkdir()
        local = client.download_artifacts(run_id, "summary/summary.json", str(dst))
        back = json.loads(Path(local).read_text())
        _say(
            back == payload and names == ["summary/summary.json"],
            f"artifact summary/summary.json round-tripped through the proxied store ({names})",
        )
    return exp_id


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        if not env.get(var):
            raise SystemExit(f"[smoke] {var} is not set: source the cluster's env.sh first")
    return env


def ray_bin() -> str:
    cand = Path(sys.executable).with_name("ray")
    return str(cand) if cand.exists() else "ray"


def check_ray_nodes(min_nodes: int) -> None:
    gcs = os.environ.get("SEEDLAB_RAY_GCS_ADDRESS")
    if not gcs:
        print("[smoke] SKIP: ray status (SEEDLAB_RAY_GCS_ADDRESS not set)")
        return
    env = ray_env()
    env.pop("RAY_ADDRESS")
    out = subprocess.run(
        [ray_bin(), "status", "--address", gcs],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    ).stdout
    active = out.split("Active:", 1)[-1].split("Pending:", 1)[0]
    n = sum(1 for line in active.splitlines() if "node_" in line)
    _say(n >= min_nodes, f"`ray status` shows {n} alive nodes (expected >= {min_nodes})")


def check_ray_job(experiment_name: str, min_nodes: int) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    env = ray_env()
    # Only the (non-secret) experiment name travels in runtime_env; the MLflow URI and
    # credentials come from the Ray nodes' own environment (see docs/cluster.md).
    with tempfile.TemporaryDirectory() as wd:
        Path(wd, "smoke_job.py").write_text(JOB_SCRIPT)
        t0 = time.time()
        proc = subprocess.run(
            [
                ray_bin(), "job", "submit", "--working-dir", wd,
                "--runtime-env-json", json.dumps({"env_vars": {"SMOKE_EXPERIMENT": experiment_name}}),
                "--", "python", "smoke_job.py",
            ],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SMOKE_RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        _say(False, f"`ray job submit` exited {proc.returncode}")
    res = json.loads(lines[-1].split(" ", 1)[1])
    _say(True, f"`ray job submit` succeeded in {time.time() - t0:.0f}s: cluster_resources={res['resources']}")
    _say(res["alive_nodes"] >= min_nodes, f"job driver sees {res['alive_nodes']} alive nodes")
    _say(
        res["node_id"] != res["driver_node"],
        f"task ran on worker node {res['node_id'][:12]} (driver on head {res['driver_node'][:12]})",
    )
    run = MlflowClient().get_run(res["run_id"])
    ok = run.data.metrics.get("answer") == 42.0
    local = mlflow.artifacts.load_dict(f"runs:/{res['run_id']}/worker/result.json")
    _say(ok and local == {"ok": True}, f"MLflow run {res['run_id']} logged from the Ray worker is readable")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-nodes", type=int, default=2)
    ap.add_argument("--skip-ray-job", action="store_true")
    args = ap.parse_args()
    uri, user = os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not uri or not user or not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        print("[smoke] MLFLOW_TRACKING_URI/USERNAME/PASSWORD not set: source the cluster's env.sh")
        return 2
    experiment = f"seedlab-smoke-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    check_mlflow_unauthenticated(uri, user)
    check_mlflow_roundtrip(experiment)
    check_ray_nodes(args.min_nodes)
    if not args.skip_ray_job:
        check_ray_job(experiment, args.min_nodes)
    print("[smoke] all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
