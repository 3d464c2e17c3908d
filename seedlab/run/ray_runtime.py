"""The Ray pieces every stage shares: joining or starting the runtime, and quiet workers.

A sweep's terminal shows its stages, one live progress line each, and the result. So on a local runtime (the
one machine case) worker output stays in Ray's log files instead of interleaving with the progress lines:
per-trial progress bars, transformers' load reports, and the traceback Ray's SIGTERM handler prints when it
ends an idle worker. Where those files are is printed once. On a cluster (`ray job submit`), Ray's defaults
stand: worker output goes to the job's log, where `ray job logs` shows it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

# In the driver and every worker: no progress bars (MLflow's artifact transfers, transformers' weight loading and
# shard writing, the hub's downloads). They are per trial, and many trials run at once.
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
             # Tune's legacy reporter honours verbose=0 (the new one prints a configuration table regardless)
             "RAY_AIR_NEW_OUTPUT": "0",
             # No CSV, JSON and TensorBoard files per trial, written by the driver at every result: the MLflow
             # store is the record, and on a sweep of short trials the driver's time is the bottleneck
             # (benchmarks/RESULTS.md, issue 14). Tune's own experiment state, for a restore, is kept.
             "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


def quiet_process() -> None:
    """Set QUIET_ENV in this process (values a user set stay), before the libraries read them; MLflow's
    notes on creating a new store's tables are INFO lines a sweep's user need not read."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    # Without those files, Tune's result grid warns once per trial that it found no result.json to read
    # (seedlab reads each trial's result from memory and its record from MLflow)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def init_ray(out=sys.stdout) -> None:
    """Join the cluster that RAY_ADDRESS names (`ray job submit` sets it), or start a local runtime."""
    import ray

    quiet_process()
    if ray.is_initialized():
        return
    # An http:// RAY_ADDRESS is the jobs API of a running cluster (cluster/local/env.sh): join it.
    address = os.environ.get("RAY_ADDRESS") or None
    if address and address.startswith("http"):
        address = "auto"
    if address is None:  # the local workers inherit this process's environment, QUIET_ENV included
        # Token auth stays on (Ray's default for a local runtime, a token made on first use); the warning Ray
        # prints about that default at every start is not the user's to act on. (Setting RAY_AUTH_MODE here
        # instead is too late: Ray reads it when first imported.)
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(logging_level="WARNING", include_dashboard=False, log_to_driver=False)
        print(f"[ray] local runtime started; worker logs in {_session_logs()}", file=out, flush=True)
    else:
        ray.init(address=address, logging_level="WARNING")


def trial_slots(cpus_per_trial: float, gpu_per_trial: float = 0.0) -> int:
    """How many trials of that size the cluster holds at once now (at least 1)."""
    import ray

    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // cpus_per_trial)
    if gpu_per_trial > 0:
        slots = min(slots, int(resources.get("GPU", 0) / gpu_per_trial + 1e-9))
    return max(1, slots)


@contextlib.contextmanager
def pending_trials(count: int):
    """Let Tune keep `count` trials pending (a placement group requested, an actor starting) at once.

    Tune allows one pending trial with a custom searcher (seedlab's cell order) unless the searcher sits under a
    concurrency limit, so actors start one at a time and, on a sweep of short trials, the second slot's actor is
    evicted between trials while one worker runs them all (benchmarks/RESULTS.md, issue 14). Tune reads
    TUNE_MAX_PENDING_TRIALS_PG when the run starts; a value the user set stays.
    """
    name = "TUNE_MAX_PENDING_TRIALS_PG"
    if name in os.environ:
        yield
        return
    os.environ[name] = str(max(1, count))
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _session_logs() -> str:
    """The local session's log folder (Ray has no public API for it; its documented default is the fallback)."""
    try:
        return os.path.join(ray_node().get_session_dir_path(), "logs")
    except Exception:  # noqa: BLE001 - a private attribute moved: say where Ray's docs say the logs are
        return "/tmp/ray/session_latest/logs"


def ray_node():
    import ray

    return ray._private.worker._global_node
