"""The cluster path end to end, on the local stack (tests/cluster/conftest.py `stack`):

1. `ray job submit --working-dir . -- python sweeps/bert_sizes.py --profile smoke --models tiny
   --pretrain-seeds 0 --finetune-seeds 0,1 --experiment ...` against the 2-node cluster: two trials, one on
   the head and one on the worker node, each logging its run to the MLflow server with only the
   credentials its node's environment holds;
2. `seedlab analyze --experiment ... --tracking-uri http://127.0.0.1:<port>` (credentials from the
   environment) reads both runs back;
3. no credential (MLflow client / admin password, Ray token, PostgreSQL password) appears in any run's
   params or tags, in the job's record or logs, or in any log or file the stack wrote;
4. nothing of the stack listens beyond loopback except Ray's own processes (see docs/cluster.md).

About 1.5 minutes after the stack is up (~30 s).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from _stack import RAY, REPO, VENV, listening_sockets_of, summarize_runs, unique

# the smoke profile: WikiText-2 pretraining, then SST-2
pytestmark = [pytest.mark.cluster, pytest.mark.needs_data("glue/SST-2", "corpus/wikitext-2")]

EXPERIMENT = unique("cluster-path")
SWEEP_ARGS = ["--profile", "smoke", "--models", "tiny", "--pretrain-seeds", "0", "--finetune-seeds", "0,1"]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
# Ray's processes. They bind the node address or all interfaces, and Ray offers no bind address for them.
RAY_LISTENERS = ("/ray/core/src/ray/gcs/gcs_server", "/ray/core/src/ray/raylet/raylet", "ray::",
                 "ray/dashboard/dashboard.py", "ray/autoscaler/_private/monitor.py", "ray/autoscaler/v2/monitor.py",
                 "-m ray.util.client.server")


@pytest.fixture(scope="module")
def job(stack):
    started = time.time()
    proc = subprocess.run(
        [RAY, "job", "submit", "--working-dir", ".", "--", "python", "sweeps/bert_sizes.py", *SWEEP_ARGS,
         "--experiment", EXPERIMENT],
        cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=420,
    )
    seconds = time.time() - started
    output = proc.stdout + proc.stderr
    print(f"\n[cluster-path] ray job submit: exit {proc.returncode} after {seconds:.0f}s")
    found = re.search(r"Job '(raysubmit_\w+)'", output)
    assert found, output[-4000:]
    jobs = [j for j in stack.ray_list("jobs") if j.get("submission_id") == found[1]]
    return {"proc": proc, "output": output, "seconds": seconds, "submission_id": found[1],
            "job_id": jobs[0]["job_id"] if jobs else None}


def _clean(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if "Map:" not in ln)


def test_job_runs_trials_on_both_nodes_and_logs_them_to_the_server(stack, job):
    assert job["proc"].returncode == 0, _clean(job["output"])[-5000:]
    assert "2 cells, 0 already finished, 2 to run" in job["output"]
    assert "finished: 2 trials logged, 0 failed" in job["output"]

    runs = stack.runs(EXPERIMENT)
    summary = summarize_runs(runs)
    assert summary["by_name"] == {"sst2/tiny/p0/f0": ["FINISHED"], "sst2/tiny/p0/f1": ["FINISHED"]}
    assert len(summary["finished_keys"]) == 2 and all(len(v) == 1 for v in summary["finished_keys"].values())
    for run in runs:
        listed = stack.rest("GET", "/api/2.0/mlflow/artifacts/list", {"run_id": run["info"]["run_id"],
                                                                       "path": "predictions"})
        assert [f["path"] for f in listed.get("files", [])] == ["predictions/validation.parquet"]
        assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:/")  # proxied by the server
    parents = stack.runs(EXPERIMENT, kind="sweep")
    assert [p["info"]["status"] for p in parents] == ["FINISHED"]
    parent_params = {p["key"]: p["value"] for p in parents[0]["data"]["params"]}
    assert parent_params["models"] == "tiny" and parent_params["finetune_seeds"] == "0,1"

    # Where the trials ran: each run carries the id of its Ray node.
    nodes = stack.nodes()
    ran_on = {next(t["value"] for t in run["data"]["tags"] if t["key"] == "seedlab.ray_node_id") for run in runs}
    assert ran_on == {nodes["head"]["node_id"], nodes["worker"]["node_id"]}, "not one trial on each node"


def test_analyze_reads_the_runs_back_from_the_server(stack, job, tmp_path):
    assert job["proc"].returncode == 0
    started = time.time()
    proc = subprocess.run(
        [str(VENV / "bin" / "seedlab"), "analyze", "--experiment", EXPERIMENT, "--tracking-uri", stack.mlflow_uri,
         "--report", str(tmp_path / "report.html")],
        cwd=tmp_path, env=stack.env, capture_output=True, text=True, timeout=300,
    )
    print(f"[cluster-path] seedlab analyze: exit {proc.returncode} after {time.time() - started:.0f}s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Experiment {EXPERIMENT!r}  ({stack.mlflow_uri})" in proc.stdout
    assert "trial runs by status: FINISHED 2" in proc.stdout
    assert re.search(r"^tiny\s+2\s", proc.stdout, re.M), proc.stdout[:2000]

    # Without the credentials the server refuses the same request.
    anonymous = {k: v for k, v in stack.env.items() if k not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    denied = subprocess.run(
        [str(VENV / "bin" / "seedlab"), "analyze", "--experiment", EXPERIMENT, "--tracking-uri", stack.mlflow_uri,
         "--report", str(tmp_path / "denied.html")],
        cwd=tmp_path, env=anonymous, capture_output=True, text=True, timeout=300,
    )
    assert denied.returncode != 0
    assert "401" in denied.stdout + denied.stderr or "Unauthorized" in denied.stdout + denied.stderr


def _secrets(stack) -> dict[str, str]:
    secrets = {name: (stack.state / "secrets" / name).read_text().strip()
               for name in ("mlflow_password", "mlflow_admin_password", "pg_password", "ray_auth_token",
                            "flask_secret_key")}
    assert secrets["mlflow_password"] == stack.password
    assert all(len(v) >= 32 for v in secrets.values())
    return secrets


def _files_holding(roots: list[Path], secrets: dict[str, str]) -> list[str]:
    needles = {name: value.encode() for name, value in secrets.items()}
    hits = []
    for root in roots:
        paths = [root] if root.is_file() else root.rglob("*")
        for path in paths:
            try:
                if not path.is_file() or path.is_symlink():
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path}: {name}" for name, needle in needles.items() if needle in data]
    return hits


def test_no_credential_in_runs_job_records_or_logs(stack, job):
    assert job["proc"].returncode == 0
    secrets = _secrets(stack)

    # MLflow: params and tags of every run of the experiment: the trials, the sweep's parent run, and the
    # run `seedlab analyze` logs (when the analyze test ran first), and of its pretraining stage's experiment.
    runs = stack.runs(EXPERIMENT, kind=None) + stack.runs(f"{EXPERIMENT}-pretrain", kind=None)
    kinds = sorted(next((t["value"] for t in r["data"].get("tags", []) if t["key"] == "seedlab.kind"), "?") for r in runs)
    assert kinds.count("trial") == 2 and kinds.count("sweep") == 1, kinds
    for run in runs:
        values = [x["value"] for x in run["data"].get("params", []) + run["data"].get("tags", [])]
        values += [x["key"] for x in run["data"].get("params", []) + run["data"].get("tags", [])]
        for name, secret in secrets.items():
            assert not any(secret in v for v in values), f"{name} in a param/tag of run {run['info']['run_id']}"

    # Ray: the job's record (entrypoint, runtime_env, metadata) and its logs.
    record = json.dumps([j for j in stack.ray_list("jobs") if j.get("submission_id") == job["submission_id"]])
    logs = subprocess.run([RAY, "job", "logs", job["submission_id"]], env=stack.env, capture_output=True,
                          text=True, timeout=120)
    assert logs.returncode == 0 and "finished: 2 trials logged" in logs.stdout
    for name, secret in secrets.items():
        assert secret not in record, f"{name} in the Ray job record"
        assert secret not in logs.stdout + logs.stderr, f"{name} in `ray job logs`"
        assert secret not in job["output"], f"{name} in the `ray job submit` output"

    # Every log and file the stack wrote: Ray's session dirs of both nodes (driver, workers, agents,
    # GCS, the unpacked working_dir), Tune's experiment state, MLflow's and PostgreSQL's logs, artifacts.
    roots = [stack.state / "logs", stack.state / "pg" / "postgres.log", stack.state / "mlflow" / "artifacts",
             stack.state / "ray-results", stack.ray_temp_dir]
    assert (stack.state / "ray-results").is_dir(), "Tune's experiment state is not in the state dir"
    hits = _files_holding([r for r in roots if r.exists()], secrets)
    assert not hits, "credentials written to:\n" + "\n".join(hits)


def test_only_rays_own_processes_listen_beyond_loopback(stack, job):
    sockets = listening_sockets_of(stack.stack_pids())
    assert sockets
    by_port: dict[int, set[str]] = {}
    for _, _, host, port in sockets:
        by_port.setdefault(port, set()).add(host)
    for key in ("PG_PORT", "MLFLOW_PORT", "RAY_DASHBOARD_PORT"):
        port = int(stack.ports[key])
        assert by_port.get(port) and by_port[port] <= LOOPBACK, f"{key} {port} listens on {by_port.get(port)}"
    exposed = [(pid, cmd, host, port) for pid, cmd, host, port in sockets if host not in LOOPBACK]
    report = "\n".join(f"  {host}:{port}  pid {pid}  {cmd[:100]}" for pid, cmd, host, port in exposed)
    print(f"\n[cluster-path] listeners beyond loopback (all Ray's):\n{report}")
    offenders = [s for s in exposed if not any(marker in s[1] for marker in RAY_LISTENERS)]
    assert not offenders, "non-Ray processes listen beyond loopback:\n" + "\n".join(map(str, offenders))
    # Ray's worker processes listen only inside the port blocks up.sh reserved for the nodes.
    base, nodes = int(stack.ports["RAY_WORKER_PORT_BASE"]), int(stack.ports["RAY_WORKER_PORT_NODES"])
    for pid, cmd, host, port in sockets:
        if cmd.startswith("ray::") and not cmd.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
            assert base <= port < base + 64 * nodes, f"worker {pid} ({cmd[:60]}) listens on {port}"
