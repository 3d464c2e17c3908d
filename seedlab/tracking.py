"""The MLflow side of seedlab: experiments, sweep runs, trial runs and their lookup.

A trial logs everything at its end, in a handful of batched calls (create, log_batch, artifacts,
terminate), each retried on transient store errors. So a run exists as FINISHED only once its whole
result is in the store, and concurrent trials on the local SQLite store wait for each other instead of
failing on "database is locked".
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from pathlib import Path

from seedlab import __version__
from seedlab.errors import SeedlabError
from seedlab.paths import PROJECT_ROOT, default_tracking_uri

TAG_KIND = "seedlab.kind"  # "sweep" | "trial" | "analysis"
TAG_SWEEP = "seedlab.sweep"
TAG_TRIAL_KEY = "seedlab.trial_key"
TAG_GIT = "seedlab.git_commit"
TAG_VERSION = "seedlab.version"
TAG_NODE = "seedlab.ray_node_id"  # the Ray node a trial ran on (which machine, when a result looks wrong)
PARENT_TAG = "mlflow.parentRunId"
MAX_METRICS_PER_BATCH = 1000  # MLflow's per-request limits
MAX_PARAMS_PER_BATCH = 100


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else the local SQLite store (created, in WAL mode)."""
    uri = uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers and one writer proceed together; MLflow's own busy_timeout covers the rest.
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode=WAL")
    return uri


def client(uri: str | None = None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=resolve_tracking_uri(uri))


def retry(call, *args, attempts: int = 8, **kwargs):
    """Retry a store call on transient failures (locked SQLite, server restarting), with backoff."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except (MlflowException, OSError, ConnectionError) as exc:
            transient = "locked" in str(exc) or "TEMPORARILY_UNAVAILABLE" in str(exc) or isinstance(
                exc, (OSError, ConnectionError)) or "Connection" in str(exc) or "500" in str(exc)
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(min(30.0, 0.5 * 2**attempt))


def artifact_root(uri: str) -> str | None:
    """For the local SQLite store, artifacts go beside the database; servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return None


def get_or_create_experiment(mlflow_client, name: str, uri: str) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = artifact_root(uri)
    return retry(mlflow_client.create_experiment, name, artifact_location=f"{root}/{name}" if root else None)


def find_experiment(mlflow_client, name: str):
    """The experiment named `name`, or a one-line error listing the experiments that exist."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        names = sorted(e.name for e in mlflow_client.search_experiments() if e.name != "Default")
        raise SeedlabError(f"unknown experiment {name!r} (valid: {', '.join(names) or 'none: run a sweep first'})")
    return found


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def finished_trial_runs(mlflow_client, experiment_id: str) -> dict[str, str]:
    """{trial key: run id} of FINISHED trial runs: the cells a rerun skips."""
    from mlflow.entities import ViewType

    runs = mlflow_client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = 'trial' and attributes.status = 'FINISHED'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=50000,
    )
    return {r.data.tags[TAG_TRIAL_KEY]: r.info.run_id for r in runs if TAG_TRIAL_KEY in r.data.tags}


def start_sweep_run(mlflow_client, experiment_id: str, sweep: str, params: dict) -> str:
    from mlflow.entities import Param

    run = retry(mlflow_client.create_run, experiment_id, run_name=f"sweep/{sweep}",
                tags={TAG_KIND: "sweep", TAG_SWEEP: sweep, TAG_GIT: git_commit(), TAG_VERSION: __version__})
    retry(mlflow_client.log_batch, run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


def log_run(mlflow_client, experiment_id: str, run_name: str, params: dict, metrics: list, tags: dict,
            artifacts: dict[str, str], parent_run_id: str | None = None) -> str:
    """Create a FINISHED run in one go. `metrics`: (key, value, step) triples; `artifacts`: {dir: local file}."""
    from mlflow.entities import Metric, Param

    all_tags = {**tags, "mlflow.runName": run_name}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = retry(mlflow_client.create_run, experiment_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        param_list = [Param(k, str(v)) for k, v in params.items()]
        metric_list = [Metric(k, float(v), now, int(step)) for k, v, step in metrics]
        for i in range(0, len(param_list), MAX_PARAMS_PER_BATCH):
            retry(mlflow_client.log_batch, run_id, params=param_list[i : i + MAX_PARAMS_PER_BATCH])
        for i in range(0, len(metric_list), MAX_METRICS_PER_BATCH):
            retry(mlflow_client.log_batch, run_id, metrics=metric_list[i : i + MAX_METRICS_PER_BATCH])
        for artifact_dir, local in artifacts.items():
            retry(mlflow_client.log_artifact, run_id, local, artifact_dir)
        retry(mlflow_client.set_terminated, run_id, "FINISHED")
    except BaseException:
        with contextlib.suppress(Exception):
            mlflow_client.set_terminated(run_id, "FAILED")
        raise
    return run_id
