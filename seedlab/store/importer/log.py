"""Logging a validated `ImportPlan`: first checked against the store (runs already imported, cells taken,
other instances), then each run logged as a FINISHED trial run under one parent run, all through
`seedlab.store.contract` (paged queries, retried writes, `log_run`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seedlab.errors import SeedlabError
from seedlab.store.contract import (KIND_IMPORT, KIND_TRIAL, PREDICTIONS_DIR, TAG_GIT, TAG_KIND, TAG_SWEEP,
                                    TAG_TRIAL_KEY, TAG_VERSION, client, find_runs, get_or_create_experiment,
                                    git_commit, import_run_name, log_run, resolve_tracking_uri, retry)
from seedlab.store.contract import TAG_IMPORT_DIGEST, TAG_IMPORT_FORMAT, TAG_SOURCE, TAG_SOURCE_RUN  # noqa: F401
from seedlab.store.importer.layout import read_folder
from seedlab.store.importer.plan import ImportedRun, ImportPlan


@dataclass
class ImportResult:
    format: str
    source: str
    experiment: str
    experiment_id: str | None  # None on a dry run into an experiment that does not exist yet
    tracking_uri: str
    parent_run_id: str | None  # None when nothing was imported
    imported: list[tuple[str, str]]  # (run name, run id); run id "" on a dry run
    skipped: list[str]  # run names already in the experiment with the same trial key and content
    notes: list[str]
    dry_run: bool = False
    runs: list[ImportedRun] = field(default_factory=list, repr=False)


def import_trial_key(source_id: str, source_run: str) -> str:
    """The trial key of an imported run: a deterministic hash of the source folder's name and the run's name."""
    canonical = json.dumps({"import": source_id, "run": source_run}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def import_predictions(folder, experiment: str | None = None, tracking_uri: str | None = None, fmt: str = "auto",
                       dry_run: bool = False, data_dir=None) -> ImportResult:
    """Validate `folder` completely (`read_folder`), then log its runs (`import_plan`): nothing is written unless
    all of it validates and agrees with the store."""
    plan = read_folder(folder, fmt, data_dir)
    return import_plan(plan, experiment, tracking_uri, dry_run)


def import_plan(plan: ImportPlan, experiment: str | None = None, tracking_uri: str | None = None,
                dry_run: bool = False) -> ImportResult:
    """Log a validated plan: runs already imported (same trial key and content) are skipped; the rest become
    FINISHED trial runs under a new parent run. Checks against the store happen before anything is written.

    Parameters
    ----------
    plan : ImportPlan
        From `read_folder`.
    experiment : str, optional
        Default: the plan's (``import-<folder name>``, or ``import-zhou2020``).
    tracking_uri : str, optional
        Default: `seedlab.store.contract.resolve_tracking_uri`'s.
    dry_run : bool
        Compare with the store and report, but write nothing.
    """
    experiment = experiment or plan.default_experiment
    uri = resolve_tracking_uri(tracking_uri)
    store = client(uri)
    found = retry(store.get_experiment_by_name, experiment)
    if found is not None and found.lifecycle_stage != "active":
        raise SeedlabError(f"experiment {experiment!r} is deleted; restore it or choose another --experiment")
    experiment_id = found.experiment_id if found is not None else None
    todo, skipped = _compare_with_store(store, experiment_id, experiment, plan)
    result = ImportResult(plan.format, plan.source, experiment, experiment_id, uri, None, [], skipped,
                          list(plan.notes), dry_run, plan.runs)
    if dry_run:
        result.imported = [(r.run_name, "") for r in todo]
        return result
    if todo:
        result.experiment_id, result.parent_run_id, result.imported = _log(store, uri, experiment, plan, todo)
    return result


def _compare_with_store(store, experiment_id, experiment: str, plan: ImportPlan) -> tuple[list, list]:
    """(runs to log, names of runs to skip); errors for changed re-imports, taken cells, mismatched instances."""
    if experiment_id is None:
        return list(plan.runs), []
    existing = find_runs(store, [experiment_id], KIND_TRIAL)  # every page: a check that saw part would let duplicates in
    by_key = {r.data.tags.get(TAG_TRIAL_KEY): r for r in existing}
    by_cell = {}
    for r in existing:
        p = r.data.params
        try:
            cell = (p["task"], p["model"], p.get("method", "standard"), int(p["pretrain_seed"]),
                    int(p["finetune_seed"]))
        except (KeyError, ValueError):
            continue
        by_cell.setdefault(cell, r)
    todo, skipped = [], []
    for run in plan.runs:
        key = import_trial_key(plan.source_id, run.source_run)
        if key in by_key:
            previous = by_key[key]
            if previous.data.tags.get(TAG_IMPORT_DIGEST) != run.digest():
                raise SeedlabError(f"{run.source_file}: run {run.source_run!r} was imported into experiment "
                                   f"{experiment!r} before with different content (run {previous.info.run_id}); "
                                   f"delete that run or import into another experiment")
            skipped.append(run.run_name)
            continue
        if run.cell in by_cell:
            other = by_cell[run.cell]
            raise SeedlabError(f"{run.source_file}: experiment {experiment!r} already has a run of this cell "
                               f"({run.run_name}: run {other.info.run_id}, from "
                               f"{other.data.tags.get(TAG_SOURCE, 'a sweep')}); import into another experiment")
        todo.append(run)
    _check_store_instances(store, experiment, existing, todo)
    return todo, skipped


def _check_store_instances(store, experiment: str, existing: list, todo: list[ImportedRun]) -> None:
    """New runs of a task must predict the same instances, with the same labels, as the runs already there."""
    from seedlab.data.tasks import EVAL_SPLIT
    from seedlab.store.predictions import read_predictions

    artifact = f"{PREDICTIONS_DIR}/{EVAL_SPLIT}.parquet"
    for task in dict.fromkeys(r.task for r in todo):
        others = [r for r in existing if r.data.params.get("task") == task]
        if not others:
            continue
        ref = others[0]
        with tempfile.TemporaryDirectory(prefix="seedlab-import-") as tmp:
            try:
                local = retry(store.download_artifacts, ref.info.run_id, artifact, tmp)
            except Exception as exc:  # noqa: BLE001 - the loader would fail on it the same way
                cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SeedlabError(f"experiment {experiment!r}: run {ref.info.run_id} of task {task!r} has no "
                                   f"readable {artifact} artifact ({cause})") from None
            stored = read_predictions(local, source=f"run {ref.info.run_id}")
        run = next(r for r in todo if r.task == task)
        position = {iid: i for i, iid in enumerate(stored.instance_ids)}
        if len(run.instance_ids) != len(position) or any(i not in position for i in run.instance_ids):
            raise SeedlabError(f"{run.source_file}: task {task!r} in experiment {experiment!r} has runs on other "
                               f"instances ({len(position)} in run {ref.info.run_id} vs {len(run.instance_ids)} here); "
                               f"import into another experiment or rename the task")
        order = np.fromiter((position[i] for i in run.instance_ids), dtype=np.int64, count=len(run.instance_ids))
        if not np.array_equal(stored.labels[order], run.labels):
            raise SeedlabError(f"{run.source_file}: task {task!r} in experiment {experiment!r} has other labels for "
                               f"the same instances (run {ref.info.run_id}); check the label convention")


def _log(store, uri: str, experiment: str, plan: ImportPlan, todo: list[ImportedRun]):
    """(experiment id, parent run id, [(run name, run id)]): the parent run, then one trial run per run."""
    from mlflow.entities import Param

    from seedlab import __version__
    from seedlab.data.tasks import EVAL_SPLIT
    from seedlab.store.predictions import write_predictions

    experiment_id = get_or_create_experiment(store, experiment, uri)
    commit = git_commit()
    common = {TAG_SWEEP: plan.sweep, TAG_SOURCE: plan.source, TAG_IMPORT_FORMAT: plan.format, TAG_GIT: commit,
              TAG_VERSION: __version__}
    parent = retry(store.create_run, experiment_id, run_name=import_run_name(plan.source_id),
                   tags={**common, TAG_KIND: KIND_IMPORT}).info.run_id
    imported = []
    try:
        params = {"format": plan.format, "source": plan.source, "runs_in_source": len(plan.runs),
                  "runs_imported": len(todo), "notes": " | ".join(plan.notes)[:500]}
        retry(store.log_batch, parent, params=[Param(k, str(v)) for k, v in params.items()])
        with tempfile.TemporaryDirectory(prefix="seedlab-import-") as tmp:
            for i, run in enumerate(todo):
                path = write_predictions(Path(tmp) / str(i) / f"{EVAL_SPLIT}.parquet", run.instance_ids, run.labels,
                                         run.predictions, run.probs)
                params = {"task": run.task, "model": run.model, "pretrain_seed": run.pretrain_seed,
                          "finetune_seed": run.finetune_seed, "method": run.method, "num_eval": len(run.instance_ids),
                          "source_format": plan.format, "source_run": run.source_run, "source_file": run.source_file,
                          **run.extra_params}
                tags = {**common, TAG_KIND: KIND_TRIAL, TAG_TRIAL_KEY: import_trial_key(plan.source_id, run.source_run),
                        TAG_SOURCE_RUN: run.source_run, TAG_IMPORT_DIGEST: run.digest()}
                metrics = [(k, v, 0) for k, v in run.metrics.items()]
                run_id = log_run(store, experiment_id, run.run_name, params, metrics, tags, {PREDICTIONS_DIR: str(path)},
                                 parent_run_id=parent)
                imported.append((run.run_name, run_id))
        retry(store.set_terminated, parent, "FINISHED")
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters more
            store.set_terminated(parent, "FAILED")
        raise
    return experiment_id, parent, imported


def format_result(result: ImportResult) -> str:
    """The CLI's report of an import (or a dry run)."""
    verb = "would import" if result.dry_run else "imported"
    lines = [f"{result.format} import of {result.source}",
             f"experiment {result.experiment!r} at {result.tracking_uri}: {len(result.runs)} runs in the source, "
             f"{len(result.skipped)} already imported, {len(result.imported)} {verb}"
             + (f" (parent run {result.parent_run_id})" if result.parent_run_id else "")]
    new = {name for name, _ in result.imported}
    for run in result.runs:
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in run.metrics.items())
        state = verb if run.run_name in new else "skipped"
        lines.append(f"  {run.run_name:<40} {run.source_run:<24} n={len(run.instance_ids):<7} {metrics}  [{state}]")
    lines += [f"note: {n}" for n in result.notes]
    if result.imported and not result.dry_run:
        lines.append(f"analyze with: seedlab analyze --experiment {result.experiment}"
                     + (f" --tracking-uri {result.tracking_uri}" if result.tracking_uri else ""))
    return "\n".join(lines)
