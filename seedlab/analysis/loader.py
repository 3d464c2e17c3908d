"""The loader: MLflow trial runs -> one `RunTable` per task. The only part of the analysis that talks to MLflow.

It reads every trial run of an experiment, keeps the FINISHED ones (one per trial key; later duplicates
are reported, not used), reads each run's `predictions/<split>.parquet`, checks that the runs of a task
share the same instance ids and labels, and aligns them into arrays.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from seedlab.errors import SeedlabError
from seedlab.store.predictions import PredictionFile, read_predictions, read_representations
from seedlab.stats.design import RunTable
from seedlab.data.tasks import EVAL_SPLIT, TASKS
from seedlab.store.contract import (KIND_SWEEP, KIND_TRIAL, PREDICTIONS_DIR, REPRESENTATIONS_DIR, RUN_NAME_TAG,
                                    TAG_TRIAL_KEY, client, find_experiment, find_runs, retry, trial_run_name)


@dataclass
class LoadedExperiment:
    experiment: str
    experiment_id: str
    tracking_uri: str
    tables: dict[str, RunTable]  # task -> runs
    run_status: dict[str, int] = field(default_factory=dict)  # status -> count over all trial runs
    duplicates: list[str] = field(default_factory=list)  # run names of extra FINISHED runs of one cell
    unfinished: list[str] = field(default_factory=list)  # run names of FAILED / RUNNING / KILLED trial runs
    missing_cells: list[str] = field(default_factory=list)  # declared by a sweep launch, with no FINISHED run
    # task -> {run id: (layers, instances, hidden) first-token states aligned with the table's instances}
    representations: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # run id -> {"seconds": device seconds of the trial or None, "device": the run's device param or None}
    run_resources: dict[str, dict] = field(default_factory=dict)


@dataclass
class _Run:
    run_id: str
    name: str
    task: str
    model: str
    pretrain_seed: int
    finetune_seed: int
    method: str
    hp_config: str = ""
    seconds: float | None = None
    device: str | None = None
    artifact_uri: str = ""
    preds: PredictionFile | None = None
    reps: np.ndarray | None = None


def load_experiment(experiment: str, tracking_uri: str | None = None, split: str = EVAL_SPLIT, *,
                    page_size: int = 1000) -> LoadedExperiment:
    """Every trial run of `experiment` as one `RunTable` per task. `page_size`: runs per store request (every
    page is read)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per run is noise
    store = client(tracking_uri)
    exp = find_experiment(store, experiment)
    all_runs = find_runs(store, [exp.experiment_id], KIND_TRIAL, status=None, order_by=["attributes.start_time ASC"],
                         page_size=page_size)
    status_counts: dict[str, int] = defaultdict(int)
    chosen: dict[str, _Run] = {}
    duplicates, unfinished = [], []
    for run in all_runs:
        status_counts[run.info.status] += 1
        name = run.data.tags.get(RUN_NAME_TAG, run.info.run_id)
        if run.info.status != "FINISHED":
            unfinished.append(f"{name} ({run.info.status})")
            continue
        key = run.data.tags.get(TAG_TRIAL_KEY, run.info.run_id)
        if key in chosen:
            duplicates.append(name)
            continue
        p = run.data.params
        try:
            chosen[key] = _Run(run.info.run_id, name, p["task"], p["model"], int(p["pretrain_seed"]),
                               int(p["finetune_seed"]), p.get("method", "standard"), p.get("hp_config", ""),
                               _trial_seconds(run.data.metrics), p.get("device"), run.info.artifact_uri)
        except (KeyError, ValueError) as exc:
            raise SeedlabError(f"trial run {name} ({run.info.run_id}) lacks a valid param {exc}") from None
    missing = _missing_cells(store, exp.experiment_id, chosen.values(), page_size)
    if not chosen:
        raise SeedlabError(f"experiment {experiment!r} has no FINISHED trial runs "
                           f"(runs by status: {dict(status_counts) or 'none'})")
    runs = list(chosen.values())
    with tempfile.TemporaryDirectory(prefix="seedlab-load-") as tmp, ThreadPoolExecutor(8) as pool:
        def fetch(run: _Run) -> None:
            where = f"run {run.name} ({run.run_id})"
            # the run's own artifact store, addressed by its URI: MlflowClient.download_artifacts(run_id, ...)
            # would turn every error of that store (403, refused) into "does not exist"
            artifacts = get_artifact_repository(run.artifact_uri, tracking_uri=store.tracking_uri)
            local = _download(artifacts, run, f"{PREDICTIONS_DIR}/{split}.parquet", tmp + "/" + run.run_id)
            run.preds = read_predictions(local, source=where)
            listed = retry(artifacts.list_artifacts, REPRESENTATIONS_DIR)
            if any(a.path.endswith(f"{split}.safetensors") for a in listed):
                path = _download(artifacts, run, f"{REPRESENTATIONS_DIR}/{split}.safetensors", tmp + "/" + run.run_id)
                run.reps = read_representations(path, source=where)

        list(pool.map(fetch, runs))
    tables, representations = {}, {}
    for task in sorted({r.task for r in runs}):
        tables[task], representations[task] = _table(task, [r for r in runs if r.task == task])
    resources = {r.run_id: {"seconds": r.seconds, "device": r.device} for r in runs}
    return LoadedExperiment(exp.name, exp.experiment_id, store.tracking_uri, tables, dict(status_counts),
                            duplicates, unfinished, missing, representations, resources)


TIME_PARTS = ("time_setup_s", "time_train_s", "time_eval_s")  # what a trial logs (seedlab.run.trial)


def _trial_seconds(metrics: dict) -> float | None:
    """Device seconds of one trial: its `time_trial_s` metric, else the sum of the setup, train and eval times
    it logs, else its train time alone; None when it logged no timing (e.g. imported predictions)."""
    if "time_trial_s" in metrics:
        return float(metrics["time_trial_s"])
    if all(k in metrics for k in TIME_PARTS):
        return float(sum(metrics[k] for k in TIME_PARTS))
    return float(metrics["time_train_s"]) if "time_train_s" in metrics else None


def _download(artifacts, run: _Run, path: str, dst: str) -> str:
    """One artifact of a run from its artifact repository. A missing one is reported as such; any other failure
    (the store refused the credentials, the server is unreachable) as what it is, never as a missing artifact."""
    os.makedirs(dst, exist_ok=True)
    try:
        return retry(artifacts.download_artifacts, path, dst)
    except Exception as exc:  # noqa: BLE001 - turned into one line that names the run and the cause
        if _is_missing(exc):
            raise SeedlabError(f"run {run.name} ({run.run_id}) has no {path} artifact") from None
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        raise SeedlabError(f"could not read {path} of run {run.name} ({run.run_id}): "
                           f"{type(exc).__name__}: {first_line}") from exc


def _is_missing(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, FileNotFoundError):
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "404" in str(exc)[:200]
    return False


def _missing_cells(store, experiment_id: str, finished, page_size: int = 1000) -> list[str]:
    """Grid cells that a sweep launch declared (its parent run's params) but that have no FINISHED run."""
    declared = set()
    for sweep in find_runs(store, [experiment_id], KIND_SWEEP, status=None, page_size=page_size):
        p = sweep.data.params
        try:
            tasks, models, methods = p["tasks"].split(","), p["models"].split(","), p.get("methods", "standard").split(",")
            seeds = {m: [int(x) for x in p["pretrain_seeds"].split(",")] for m in models}
            finetune = {m: [int(x) for x in p["finetune_seeds"].split(",")] for m in models}
            for option, per_model in (("model_pretrain_seeds", seeds), ("model_finetune_seeds", finetune)):
                for part in filter(None, p.get(option, "").split(";")):  # per-model overrides
                    model, listed = part.rsplit(":", 1)
                    per_model[model] = [int(x) for x in listed.split(",")]
        except (KeyError, ValueError):
            continue
        declared |= {(t, m, ps, fs, meth) for t in tasks for m in models for ps in seeds[m] for fs in finetune[m]
                     for meth in methods}
    have = {(r.task, r.model, r.pretrain_seed, r.finetune_seed, r.method) for r in finished}
    return [trial_run_name(t, m, ps, fs, meth) for t, m, ps, fs, meth in sorted(declared - have)]


def _table(task: str, runs: list[_Run]) -> tuple[RunTable, dict[str, np.ndarray]]:
    """Align a task's runs on the first run's instance order, after checking they share ids and labels."""
    runs = sorted(runs, key=lambda r: (r.model, r.method, r.hp_config, r.pretrain_seed, r.finetune_seed))
    reference = runs[0]
    ref_ids = reference.preds.instance_ids
    position = {iid: i for i, iid in enumerate(ref_ids)}
    predictions, probs, reps = [], [], {}
    for run in runs:
        ids = run.preds.instance_ids
        if len(ids) != len(ref_ids) or any(i not in position for i in ids):
            extra = sorted(set(ids) - set(ref_ids))[:3]
            lacking = sorted(set(ref_ids) - set(ids))[:3]
            raise SeedlabError(
                f"runs of task {task!r} do not share instance ids: {run.name} ({run.run_id}) has {len(ids)} "
                f"vs {len(ref_ids)} in {reference.name} ({reference.run_id}); e.g. only in the first: {extra}, "
                f"missing from it: {lacking}"
            )
        order = np.fromiter((position[i] for i in ids), dtype=np.int64, count=len(ids))
        aligned = np.empty_like(order)
        aligned[order] = np.arange(len(order))
        if not np.array_equal(run.preds.labels[aligned], reference.preds.labels):
            raise SeedlabError(f"runs of task {task!r} disagree on labels: {run.name} ({run.run_id}) vs "
                               f"{reference.name} ({reference.run_id})")
        predictions.append(run.preds.predictions[aligned])
        probs.append(None if run.preds.probs is None else run.preds.probs[aligned])
        if run.reps is not None:
            if run.reps.shape[1] != len(ids):
                raise SeedlabError(f"run {run.name} ({run.run_id}): representations cover {run.reps.shape[1]} "
                                   f"instances, predictions {len(ids)}")
            reps[run.run_id] = run.reps[:, aligned, :]
    has_probs = all(p is not None for p in probs)
    regression = TASKS[task].is_regression if task in TASKS else reference.preds.predictions.dtype.kind == "f"
    methods = np.array([r.method for r in runs])
    configs = np.array([r.hp_config for r in runs])
    table = RunTable(
        task=task,
        instance_ids=np.asarray(ref_ids),
        labels=reference.preds.labels,
        run_ids=np.array([r.run_id for r in runs]),
        model=np.array([r.model for r in runs]),
        pretrain_seed=np.array([r.pretrain_seed for r in runs]),
        finetune_seed=np.array([r.finetune_seed for r in runs]),
        predictions=np.stack(predictions),
        probs=np.stack(probs) if has_probs else None,
        is_regression=regression,
        method=None if np.all(methods == "standard") else methods,
        hp_config=None if len(set(configs)) <= 1 else configs,
    )
    return table, reps
