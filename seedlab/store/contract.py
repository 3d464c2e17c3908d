"""The trial-run contract: how seedlab's runs look in MLflow, written down once.

Everything that writes runs (trials, tuning and pretraining stages, the importer, published analyses) and
everything that reads them (the loader, the skip checks, checkpoint lookup) goes through this module: run
kinds and names, tag names, the trial key, the paged queries, and `log_run`.

A run is logged at its end, in a handful of batched calls (create, one log_batch, the artifact uploads,
terminate: 4 HTTP requests for one artifact file against a tracking server), each
retried on transient store errors only. So a run exists as FINISHED only once its whole result is in the
store, and concurrent trials on the local SQLite store wait for each other instead of failing on
"database is locked".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import subprocess
import time
from pathlib import Path

from seedlab import __version__
from seedlab.data.paths import PROJECT_ROOT, default_tracking_uri
from seedlab.errors import SeedlabError

# --- run kinds: the value of TAG_KIND
KIND_SWEEP = "sweep"  # one parent run per sweep launch
KIND_TRIAL = "trial"  # one run per grid cell: predictions and metrics
KIND_ANALYSIS = "analysis"  # `seedlab analyze` results
KIND_PRETRAIN = "pretrain"  # one run per masked-LM seed family: the checkpoint
KIND_TUNING = "tuning"  # one run per tuning trial
KIND_TUNING_CHOICE = "tuning_choice"  # the hyperparameters a tuning stage chose for (task, model)
KIND_IMPORT = "import"  # the parent run of an import

# --- tags
TAG_KIND = "seedlab.kind"
TAG_SWEEP = "seedlab.sweep"
TAG_TRIAL_KEY = "seedlab.trial_key"
TAG_GIT = "seedlab.git_commit"
TAG_VERSION = "seedlab.version"
TAG_NODE = "seedlab.ray_node_id"  # the Ray node a trial ran on (which machine, when a result looks wrong)
TAG_PRETRAIN_KEY = "seedlab.pretrain_key"
TAG_TUNING_KEY = "seedlab.tuning_key"
TAG_TUNING_CHOICE = "seedlab.tuning_choice"  # on a trial: the tuning run that chose its hyperparameters
TAG_DRIVER = "seedlab.driver"  # on a sweep run: the driver process running it (`driver_identity`)
TAG_SOURCE = "seedlab.source"  # imported runs: the imported folder (absolute path)
TAG_SOURCE_RUN = "seedlab.source_run"  # the run's name inside that folder
TAG_IMPORT_FORMAT = "seedlab.import_format"
TAG_IMPORT_DIGEST = "seedlab.import_digest"  # sha256 of the imported cell and arrays
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"  # the run description in the MLflow UI

# --- artifacts
PREDICTIONS_DIR = "predictions"  # predictions/<split>.parquet (seedlab.store.predictions)
REPRESENTATIONS_DIR = "representations"  # representations/<split>.safetensors
CHECKPOINT_DIR = "checkpoint"  # the artifact directory of a pretraining run

MAX_METRICS_PER_BATCH = 1000  # MLflow's per-request limits of log_batch
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000  # metrics + params + tags in one request
PAGE_SIZE = 1000  # runs per search request; every query pages until the store has no more

# Bump when a change alters what a trial computes from the same cell (its outputs), so that runs logged by
# earlier code are not taken for runs of the new code: it enters every trial key from version 2 on.
# 2: resolve_model draws the classifier head from init_seed alone (before: a whole second BERT was drawn first).
# 3: AdamW's fused kernel (seedlab.train.finetune.adamw): the same update, rounded differently.
COMPUTE_VERSION = 3


# --- names
def trial_run_name(task: str, model: str, pretrain_seed: int, finetune_seed: int, method: str = "standard") -> str:
    """`<task>/<model>/p<pretraining seed>/f<fine-tuning seed>[/<method>]`: the one form of a trial's name
    (the model by its short name: a hub name or local path by its last component)."""
    from seedlab.data.catalog import short_name

    suffix = "" if method == "standard" else f"/{method}"
    return f"{task}/{short_name(model)}/p{pretrain_seed}/f{finetune_seed}{suffix}"


def sweep_run_name(profile: str) -> str:
    return f"sweep/{profile}"


def tuning_run_name(trial_name: str) -> str:
    return f"tune/{trial_name}"


def tuning_choice_run_name(task: str, model: str) -> str:
    return f"tune/{task}/{model}/choice"


def pretrain_run_name(size: str, pretrain_seed: int) -> str:
    return f"pretrain/{size}/p{pretrain_seed}"


def import_run_name(source_id: str) -> str:
    return f"import/{source_id}"


ANALYSIS_RUN_NAME = "analysis"


# --- the trial key
def trial_key(resolved_cell: dict) -> str:
    """A deterministic id of the computation a fully resolved cell describes: equal cells, equal keys.

    `resolved_cell` is `seedlab.run.trial.resolve_cell`'s output. The compute version enters the key only from
    version 2 on, so runs logged before it existed keep their keys."""
    canonical = dict(resolved_cell)
    if COMPUTE_VERSION > 1:
        canonical["compute_version"] = COMPUTE_VERSION
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# --- the store
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


TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})  # the codes MLflow's own HTTP client retries
# What a store error says when the connection itself failed: MLflow's REST client folds requests' errors into
# an MlflowException's text ("... Caused by NewConnectionError(...: Connection refused)"), and so does a
# PostgreSQL driver under a direct database URI. A failed name lookup is not among them: a mistyped host
# does not heal by waiting.
_CONNECTION_TROUBLE = ("Connection refused", "Connection reset", "Connection aborted", "RemoteDisconnected",
                       "server closed the connection", "timed out", "timeout exception")


def is_transient(exc: BaseException) -> bool:
    """Would the same call succeed later? A locked SQLite database, a refused, reset or timed-out
    connection, and an HTTP answer 408, 429 or 5xx: yes. A wrong path, a refused credential (401/403), a bad
    request, a missing run, an answer that is not MLflow's (a 200 page from some other server): no."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (ConnectionError, TimeoutError)):  # refused, reset, aborted, broken pipe; socket timeouts
        return True
    with contextlib.suppress(ImportError):
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
        if isinstance(exc, requests.HTTPError) and exc.response is not None:  # an HTTP artifact store's answer
            return exc.response.status_code in TRANSIENT_STATUSES
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    with contextlib.suppress(ImportError):
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.DBAPIError):  # judged by the database driver's own error
            return is_transient(exc.orig) or any(t in str(exc.orig) for t in _CONNECTION_TROUBLE)
        if isinstance(exc, MlflowException) and isinstance(exc.__cause__, sqlalchemy.exc.SQLAlchemyError):
            # A database store wraps every OperationalError as TEMPORARILY_UNAVAILABLE (503), a missing table
            # or an unopenable file too: the database's error says which it is.
            return is_transient(exc.__cause__)
    if isinstance(exc, MlflowException):
        status = _http_status(exc)
        if status is not None:
            return status in TRANSIENT_STATUSES
        text = str(exc)
        return "database is locked" in text or any(t in text for t in _CONNECTION_TROUBLE)
    return False


def _http_status(exc) -> int | None:
    """The HTTP status a server answered a store call with, or None when no server answered it.

    Not `exc.get_http_status_code()` alone: every MlflowException raised without an error code maps to 500,
    so a client-side error (an answer that is not JSON, a bad path) would read as a server error."""
    import re

    from mlflow.exceptions import RestException

    text = str(exc)
    # a non-JSON error answer ("... failed with error code 403 != 200"), or MLflow's own retries running out
    # on a retried status ("Max retries exceeded ... too many 503 error responses")
    seen = re.search(r"error code (\d{3}) != 200|too many (\d{3}) error responses", text)
    if seen:
        return int(seen.group(1) or seen.group(2))
    if isinstance(exc, RestException):  # a JSON error answer: its error code stands for the status
        return int(exc.get_http_status_code())
    return None


def retry(call, *args, attempts: int = 8, **kwargs):
    """Call a store method, retrying transient failures (`is_transient`) with exponential backoff; any other
    error is raised at once."""
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts - 1:
                raise
            time.sleep(min(30.0, 0.5 * 2**attempt))


def artifact_root(uri: str) -> str | None:
    """For the local SQLite store, artifacts go beside the database; servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return None


def get_or_create_experiment(mlflow_client, name: str, uri: str) -> str:
    found = retry(mlflow_client.get_experiment_by_name, name)
    if found is not None:
        return found.experiment_id
    root = artifact_root(uri)
    return retry(mlflow_client.create_experiment, name, artifact_location=f"{root}/{name}" if root else None)


def find_experiment(mlflow_client, name: str):
    """The experiment named `name`, or a one-line error listing the experiments that exist."""
    found = retry(mlflow_client.get_experiment_by_name, name)
    if found is None:
        names = sorted(e.name for e in retry(mlflow_client.search_experiments) if e.name != "Default")
        raise SeedlabError(f"unknown experiment {name!r} (valid: {', '.join(names) or 'none: run a sweep first'})")
    return found


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- queries: each pages through the store's results, so no experiment is read in part
def run_filter(kind: str | None = None, *, status: str | None = "FINISHED", tags: dict | None = None) -> str:
    """An MLflow filter string: runs of `kind` (TAG_KIND), with `status` (None: any), and each tag = value."""
    clauses = [f"tags.`{TAG_KIND}` = '{kind}'"] if kind else []
    clauses += [f"tags.`{name}` = '{value}'" for name, value in (tags or {}).items()]
    if status:
        clauses.append(f"attributes.status = '{status}'")
    return " and ".join(clauses)


def search_all(mlflow_client, experiment_ids: list[str], filter_string: str = "", *, order_by=None,
               page_size: int = PAGE_SIZE, limit: int | None = None) -> list:
    """Every run matching `filter_string` (active runs only), following the store's page tokens.
    `limit`: stop after this many."""
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        size = page_size if limit is None else min(page_size, limit - len(runs))
        page = retry(mlflow_client.search_runs, experiment_ids, filter_string=filter_string,
                     run_view_type=ViewType.ACTIVE_ONLY, max_results=size, order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token or (limit is not None and len(runs) >= limit):
            return runs


def find_runs(mlflow_client, experiment_ids: list[str], kind: str | None = None, *, status: str | None = "FINISHED",
              tags: dict | None = None, order_by=None, page_size: int = PAGE_SIZE, limit: int | None = None) -> list:
    """Runs of `kind` with `status` (None: any) and the given tag values, every page of them."""
    return search_all(mlflow_client, experiment_ids, run_filter(kind, status=status, tags=tags),
                      order_by=order_by, page_size=page_size, limit=limit)


def first_run(mlflow_client, experiment_ids: list[str], kind: str | None = None, *, status: str | None = "FINISHED",
              tags: dict | None = None, order_by=None):
    """The first run `find_runs` would return, or None."""
    found = find_runs(mlflow_client, experiment_ids, kind, status=status, tags=tags, order_by=order_by, limit=1)
    return found[0] if found else None


def finished_trial_runs(mlflow_client, experiment_id: str, *, page_size: int = PAGE_SIZE) -> dict[str, str]:
    """{trial key: run id} of FINISHED trial runs: the cells a rerun skips."""
    runs = find_runs(mlflow_client, [experiment_id], KIND_TRIAL, page_size=page_size)
    return {r.data.tags[TAG_TRIAL_KEY]: r.info.run_id for r in runs if TAG_TRIAL_KEY in r.data.tags}


def finished_runs_by_tag(mlflow_client, experiment_ids: list[str], kind: str, tag: str) -> dict[str, str]:
    """{value of `tag`: run id} of the FINISHED runs of `kind` (e.g. pretraining runs by pretrain key)."""
    runs = find_runs(mlflow_client, experiment_ids, kind)
    return {r.data.tags[tag]: r.info.run_id for r in runs if tag in r.data.tags}


# --- writing
def driver_identity(pid: int | None = None) -> str:
    """`<host>:<pid>:<boot id>:<start time>` of a process (default: this one), unique on its host even when
    pids are reused; the last two parts are empty where /proc does not tell them."""
    import os
    import socket

    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_boot_id()}:{_process_start(pid)}"


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks after boot (/proc/<pid>/stat field 22), or ""."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    return ""


def driver_alive(identity: str) -> bool | None:
    """Is the driver process `identity` still running? None when it ran on another host (not checkable)."""
    import os
    import socket

    host, _, rest = identity.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    return driver_identity(int(pid_text)) == identity if started.strip(":") else True


def start_sweep_run(mlflow_client, experiment_id: str, sweep: str, params: dict) -> str:
    from mlflow.entities import Param

    run = retry(mlflow_client.create_run, experiment_id, run_name=sweep_run_name(sweep),
                tags={TAG_KIND: KIND_SWEEP, TAG_SWEEP: sweep, TAG_GIT: git_commit(), TAG_VERSION: __version__,
                      TAG_DRIVER: driver_identity()})
    _log_batches(mlflow_client, run.info.run_id, [Param(k, str(v)) for k, v in params.items()], [], [])
    return run.info.run_id


def mark_killed(mlflow_client, run_id: str, note: str) -> None:
    """End a run as KILLED, with `note` as its description (the MLflow UI shows it on the run's page)."""
    retry(mlflow_client.set_tag, run_id, NOTE_TAG, note)
    retry(mlflow_client.set_terminated, run_id, "KILLED")


def mark_orphaned_sweep_runs(mlflow_client, experiment_id: str, sweep: str, new_run_id: str | None) -> list:
    """Mark KILLED every RUNNING parent run of `sweep` in the experiment whose driver is gone (killed, or its
    machine lost), each with a note naming `new_run_id`, the launch that found it. A run whose driver is alive
    on this host is left alone; one from another host cannot be checked and counts as orphaned (two drivers
    of one sweep at once are not supported). Its trial runs left RUNNING (killed between their create and end
    calls) are marked KILLED too. Returns [(run id, driver identity)] of the sweep runs marked."""
    marked = []
    for run in find_runs(mlflow_client, [experiment_id], KIND_SWEEP, status="RUNNING", tags={TAG_SWEEP: sweep}):
        run_id = run.info.run_id
        driver = run.data.tags.get(TAG_DRIVER, "unrecorded")
        if run_id == new_run_id or driver_alive(driver):
            continue
        unchecked = " (on another host: not checked)" if driver_alive(driver) is None and driver != "unrecorded" else ""
        successor = f"the rerun {new_run_id}" if new_run_id else "a rerun that found every cell finished"
        mark_killed(mlflow_client, run_id, f"Marked KILLED by {successor}: the driver of this launch ({driver})"
                                           f"{unchecked} stopped without ending it.")
        for child in find_runs(mlflow_client, [experiment_id], None, status="RUNNING", tags={PARENT_TAG: run_id}):
            mark_killed(mlflow_client, child.info.run_id, f"Marked KILLED by {successor}: its sweep's driver stopped "
                                                          "while this run was being logged.")
        marked.append((run_id, driver))
    return marked


def _log_batches(mlflow_client, run_id: str, params: list, metrics: list, tags: list) -> None:
    """params, metrics and tags in as few log_batch requests as MLflow's limits allow (one for most runs)."""
    params, metrics, tags = list(params), list(metrics), list(tags)
    while params or metrics or tags:
        p, params = params[:MAX_PARAMS_PER_BATCH], params[MAX_PARAMS_PER_BATCH:]
        t, tags = tags[:MAX_TAGS_PER_BATCH], tags[MAX_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(p) - len(t))
        m, metrics = metrics[:room], metrics[room:]
        retry(mlflow_client.log_batch, run_id, metrics=m, params=p, tags=t)


def log_run(mlflow_client, experiment_id: str, run_name: str, params: dict, metrics: list, tags: dict,
            artifacts: dict[str, str], parent_run_id: str | None = None) -> str:
    """Create a FINISHED run in one go and return its id.

    `metrics`: (key, value, step) triples; `artifacts`: {artifact dir ("" for the root): local file or
    directory}. Should any step fail, the run is marked FAILED, so that no half-logged run ever reads as
    FINISHED.

    Store round trips: create (with the tags), one log_batch (params and metrics, within MLflow's limits), one
    upload per artifact file, terminate. The artifact repository comes from the created run's artifact URI,
    so the run is not fetched back to find it. (Against a tracking server `set_terminated` also fetches the run
    to print a link to it, unless MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT is set, as trial workers set it.)"""
    from mlflow.entities import Metric, Param
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    all_tags = {**tags, RUN_NAME_TAG: run_name}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = retry(mlflow_client.create_run, experiment_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        _log_batches(mlflow_client, run_id, [Param(k, str(v)) for k, v in params.items()],
                     [Metric(k, float(v), now, int(step)) for k, v, step in metrics], [])
        if artifacts:
            repository = get_artifact_repository(run.info.artifact_uri, tracking_uri=mlflow_client.tracking_uri)
        for artifact_dir, local in artifacts.items():
            log = repository.log_artifacts if Path(local).is_dir() else repository.log_artifact
            retry(log, str(local), artifact_dir or None)
        retry(mlflow_client.set_terminated, run_id, "FINISHED")
    except BaseException:
        with contextlib.suppress(Exception):
            mlflow_client.set_terminated(run_id, "FAILED")
        raise
    return run_id
