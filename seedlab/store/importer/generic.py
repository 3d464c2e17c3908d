"""The generic layout: ``runs.csv`` (run, task, model, pretrain_seed, finetune_seed[, method]) and one
``<run>.parquet`` / ``<run>.csv`` / ``<run>.jsonl`` per run -> an `ImportPlan`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from seedlab.errors import SeedlabError
from seedlab.store.importer.plan import ImportedRun, ImportPlan
from seedlab.store.importer.read import PRED_SUFFIXES, read_csv, read_table_file
from seedlab.store.importer.validate import Predictions, check_task, validate_predictions

RUNS_FILE = "runs.csv"
RUNS_REQUIRED = ("run", "task", "model", "pretrain_seed", "finetune_seed")
RUNS_OPTIONAL = ("method",)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def read_generic(folder) -> ImportPlan:
    """Validate a generic folder and return its `ImportPlan`; never touches MLflow."""
    folder = Path(folder).resolve()
    if not (folder / RUNS_FILE).is_file():
        raise SeedlabError(f"{folder}: has no {RUNS_FILE} (the generic layout; see docs/import.md)")
    rows = _read_runs_csv(folder / RUNS_FILE)
    files = _match_files(folder, rows)
    predictions = {run: validate_predictions(read_table_file(path)) for run, path in files.items()}
    runs = _build_runs(rows, predictions)
    return ImportPlan("generic", str(folder), folder.name, f"import:{folder.name}", f"import-{folder.name}", runs,
                      _probs_notes(runs))


def _read_runs_csv(path: Path) -> list[dict]:
    """The rows of runs.csv, validated: names, integer seeds, each run and each cell once. A row's "where"
    names its line."""
    file = read_csv(path)  # every column as text
    header = file.table.column_names
    valid = f"required: {', '.join(RUNS_REQUIRED)}; optional: {', '.join(RUNS_OPTIONAL)}"
    missing = [c for c in RUNS_REQUIRED if c not in header]
    if missing:
        raise SeedlabError(f"{RUNS_FILE}: missing column(s) {missing} ({valid})")
    unknown = [c for c in header if c not in RUNS_REQUIRED + RUNS_OPTIONAL]
    if unknown or len(set(header)) != len(header):
        raise SeedlabError(f"{RUNS_FILE}: unknown or repeated column(s) {unknown or header} ({valid})")
    rows, by_run, by_cell = [], {}, {}
    for i, values in enumerate(file.table.to_pylist()):
        if not any(values.values()):
            continue  # a line of empty fields
        where = f"{RUNS_FILE} {file.row(i)}"
        for col in ("run", "task"):
            if not _NAME.fullmatch(values[col]):
                raise SeedlabError(f"{where}: {col} {values[col]!r} is not a valid name (letters, digits, "
                                   f"'_', '.', '+', '-'; not starting with a symbol)")
        if not values["model"]:
            raise SeedlabError(f"{where}: model is empty")
        seeds = {}
        for col in ("pretrain_seed", "finetune_seed"):
            try:
                seeds[col] = int(values[col])
            except ValueError:
                raise SeedlabError(f"{where}: {col} {values[col]!r} is not an integer") from None
        method = values.get("method") or "standard"
        row = {"where": where, "row": file.row(i), "run": values["run"], "task": values["task"],
               "model": values["model"], **seeds, "method": method}
        if row["run"] in by_run:
            raise SeedlabError(f"{where}: run {row['run']!r} is already listed on {by_run[row['run']]}")
        cell = (row["task"], row["model"], method, seeds["pretrain_seed"], seeds["finetune_seed"])
        if cell in by_cell:
            raise SeedlabError(f"{where}: duplicate cell (task={cell[0]}, model={cell[1]}, method={cell[2]}, "
                               f"pretrain_seed={cell[3]}, finetune_seed={cell[4]}) already on {by_cell[cell]}: each "
                               f"(task, model, method, seeds) must appear once")
        by_run[row["run"]] = row["row"]
        by_cell[cell] = row["row"]
        rows.append(row)
    if not rows:
        raise SeedlabError(f"{RUNS_FILE}: lists no runs")
    return rows


def _match_files(folder: Path, rows: list[dict]) -> dict[str, Path]:
    """{run: its one prediction file}; errors for files of unlisted runs, and runs with none or several."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in PRED_SUFFIXES and path.name != RUNS_FILE and not path.name.startswith("."):
            found.setdefault(path.stem, []).append(path)
    listed = {r["run"]: r for r in rows}
    for stem, paths in found.items():
        if stem not in listed:
            shown = ", ".join(list(listed)[:8]) + (", ..." if len(listed) > 8 else "")
            raise SeedlabError(f"{paths[0].name}: unknown run {stem!r}, not in {RUNS_FILE} (runs: {shown})")
    files = {}
    for run, row in listed.items():
        paths = found.get(run, [])
        if not paths:
            raise SeedlabError(f"{row['where']}: no prediction file for run {run!r} "
                               f"(expected one of {', '.join(run + s for s in PRED_SUFFIXES)})")
        if len(paths) > 1:
            raise SeedlabError(f"run {run!r} has several prediction files ({', '.join(p.name for p in paths)}); "
                               f"keep one")
        files[run] = paths[0]
    return files


def _build_runs(rows: list[dict], predictions: dict[str, Predictions]) -> list[ImportedRun]:
    """The runs, task by task (in runs.csv order), checked together and scored."""
    runs = []
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        regression = check_task(task, [predictions[r["run"]] for r in task_rows])
        values = np.float32 if regression else np.int64
        for row in task_rows:
            p = predictions[row["run"]]
            run = ImportedRun(
                source_run=row["run"], source_file=p.name, task=task, model=row["model"],
                pretrain_seed=row["pretrain_seed"], finetune_seed=row["finetune_seed"], method=row["method"],
                instance_ids=p.ids, labels=p.label.astype(values), predictions=p.prediction.astype(values),
                probs=None if p.probs is None else p.probs.astype(np.float32),
            )
            run.metrics = _score_run(run, p.name)
            runs.append(run)
    return runs


def _score_run(run: ImportedRun, where: str) -> dict:
    from seedlab.data.tasks import TASKS
    from seedlab.stats.metrics import score

    if run.task in TASKS:
        names = TASKS[run.task].metrics
    else:  # the rule seedlab.analysis.analyze.task_metrics applies to tasks it does not know
        names = ("pearson", "spearman") if run.is_regression else ("accuracy",)
    try:
        return {f"eval_{name}": float(score(name, run.labels, run.predictions)) for name in names}
    except ValueError as exc:
        raise SeedlabError(f"{where}: cannot score {run.task!r}: {exc}") from None


def _probs_notes(runs: list[ImportedRun]) -> list[str]:
    notes = []
    for task in dict.fromkeys(r.task for r in runs):
        with_probs = [r for r in runs if r.task == task and r.probs is not None]
        total = sum(r.task == task for r in runs)
        if 0 < len(with_probs) < total:
            notes.append(f"task {task!r}: only {len(with_probs)} of {total} runs have probs; the analysis uses probs "
                         f"only when every run of a task has them")
    return notes
