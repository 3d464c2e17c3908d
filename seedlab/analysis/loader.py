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
from seedlab.predictions import PredictionFile, read_predictions, read_representations
from seedlab.stats.design import RunTable
from seedlab.tasks import EVAL_SPLIT, TASKS
from seedlab.tracking import TAG_KIND, TAG_TRIAL_KEY, client, find_experiment


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
    preds: PredictionFile | None = None
    reps: np.ndarray | None = None


def load_experiment(experiment: str, tracking_uri: str | None = None, split: str = EVAL_SPLIT) -> LoadedExperiment:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per run is noise
    from mlflow.entities import ViewType

    store = client(tracking_uri)
    exp = find_experiment(store, experiment)
    all_runs = store.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_KIND}` = 'trial'",
                                 run_view_type=ViewType.ACTIVE_ONLY, max_results=50000,
                                 order_by=["attributes.start_time ASC"])
    status_counts: dict[str, int] = defaultdict(int)
    chosen: dict[str, _Run] = {}
    duplicates, unfinished = [], []
    for run in all_runs:
        status_counts[run.info.status] += 1
        name = run.data.tags.get("mlflow.runName", run.info.run_id)
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
                               int(p["finetune_seed"]), p.get("method", "standard"), p.get("hp_config", ""))
        except (KeyError, ValueError) as exc:
            raise SeedlabError(f"trial run {name} ({run.info.run_id}) lacks a valid param {exc}") from None
    missing = _missing_cells(store, exp.experiment_id, chosen.values())
    if not chosen:
        raise SeedlabError(f"experiment {experiment!r} has no FINISHED trial runs "
                           f"(runs by status: {dict(status_counts) or 'none'})")
    runs = list(chosen.values())
    with tempfile.TemporaryDirectory(prefix="seedlab-load-") as tmp, ThreadPoolExecutor(8) as pool:
        def fetch(run: _Run) -> None:
            try:
                local = store.download_artifacts(run.run_id, f"predictions/{split}.parquet", tmp + "/" + run.run_id)
            except Exception:  # noqa: BLE001 - a missing artifact is reported as malformed input
                raise SeedlabError(f"run {run.name} ({run.run_id}) has no predictions/{split}.parquet artifact") \
                    from None
            run.preds = read_predictions(local, source=f"run {run.name} ({run.run_id})")
            if any(a.path.endswith(f"{split}.safetensors") for a in store.list_artifacts(run.run_id, "representations")):
                path = store.download_artifacts(run.run_id, f"representations/{split}.safetensors",
                                                tmp + "/" + run.run_id)
                run.reps = read_representations(path, source=f"run {run.name} ({run.run_id})")

        list(pool.map(fetch, runs))
    tables, representations = {}, {}
    for task in sorted({r.task for r in runs}):
        tables[task], representations[task] = _table(task, [r for r in runs if r.task == task])
    return LoadedExperiment(exp.name, exp.experiment_id, store.tracking_uri, tables, dict(status_counts),
                            duplicates, unfinished, missing, representations)


def _missing_cells(store, experiment_id: str, finished) -> list[str]:
    """Grid cells that a sweep launch declared (its parent run's params) but that have no FINISHED run."""
    declared = set()
    for sweep in store.search_runs([experiment_id], filter_string=f"tags.`{TAG_KIND}` = 'sweep'", max_results=1000):
        p = sweep.data.params
        try:
            axes = [p["tasks"].split(","), p["models"].split(","), p["pretrain_seeds"].split(","),
                    p["finetune_seeds"].split(","), p.get("methods", "standard").split(",")]
        except KeyError:
            continue
        declared |= {(t, m, int(ps), int(fs), meth) for t in axes[0] for m in axes[1] for ps in axes[2]
                     for fs in axes[3] for meth in axes[4]}
    have = {(r.task, r.model, r.pretrain_seed, r.finetune_seed, r.method) for r in finished}
    return [f"{t}/{m}/p{ps}/f{fs}" + ("" if meth == "standard" else f"/{meth}")
            for t, m, ps, fs, meth in sorted(declared - have)]


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
