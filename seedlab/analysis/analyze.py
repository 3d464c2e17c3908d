"""From loaded runs to the analysis result: a JSON-ready dict built only from `seedlab.stats` functions.

Result shape (`seedlab analyze --json`; every number a float, None where undefined, with the reason):

    {"schema": "seedlab.analysis/1", "experiment": str, "tracking_uri": str,
     "runs": {"by_status": {status: n}, "duplicates": [run name], "unfinished": [run name (status)]},
     "tasks": {task: {
         "n_instances": int, "is_regression": bool, "metrics": [metric names],
         "design": {model: {n_runs, P, F, complete, missing_cells}},
         "models": {model: {
             "n_runs": int,
             "metrics": {metric: {n, mean, sd, ddof, min, max, values: [per run]}},
             "consistency_all": float|None, "agreement_pairwise": float|None, "fleiss_kappa": float|None,
             "instability": {sd, pd, jsd, one_minus_fleiss_kappa, ...} | None}}}}}

`sd` is the population SD over runs (ddof=0, Du & Nguyen's choice); `ddof` is recorded beside it.
"""

from __future__ import annotations

import numpy as np

from seedlab.metrics import score
from seedlab.stats.agreement import (agreement_pairwise, consistency_all, fleiss_kappa, instability_measures,
                                     summarize_metric)
from seedlab.stats.design import RunTable, design_report
from seedlab.tasks import TASKS

SCHEMA = "seedlab.analysis/1"
DDOF = 0


def task_metrics(task: str, table: RunTable) -> tuple[str, ...]:
    if task in TASKS:
        return TASKS[task].metrics
    return ("pearson", "spearman") if table.is_regression else ("accuracy",)


def summarize_model(table: RunTable, model: str, metrics: tuple[str, ...]) -> dict:
    """Macro figures (metric mean/SD/min/max over runs) and micro figures (agreement) for one model."""
    rows = np.flatnonzero(table.model == model)
    preds = table.predictions[rows]
    values = {name: [score(name, table.labels, p) for p in preds] for name in metrics}
    out = {
        "n_runs": int(len(rows)),
        "metrics": {name: {**summarize_metric(v, ddof=DDOF), "values": v} for name, v in values.items()},
        "consistency_all": None, "agreement_pairwise": None, "fleiss_kappa": None, "instability": None,
    }
    if table.is_regression:
        out["agreement_note"] = "label agreement is undefined for a regression task"
    elif len(rows) < 2:
        out["agreement_note"] = "agreement needs at least 2 runs"
    else:
        probs = None if table.probs is None else table.probs[rows]
        out["consistency_all"] = consistency_all(preds)
        out["agreement_pairwise"] = agreement_pairwise(preds)
        out["fleiss_kappa"] = fleiss_kappa(preds)
        out["instability"] = instability_measures(preds, probs, values[metrics[0]], ddof=DDOF)
    return out


def analyze_table(task: str, table: RunTable) -> dict:
    metrics = task_metrics(task, table)
    return {
        "n_instances": int(len(table.instance_ids)),
        "is_regression": bool(table.is_regression),
        "metrics": list(metrics),
        "design": _jsonable(design_report(table)),
        "models": {model: summarize_model(table, model, metrics) for model in table.models()},
    }


def analyze(loaded) -> dict:
    """The whole analysis of a `LoadedExperiment`."""
    return {
        "schema": SCHEMA,
        "experiment": loaded.experiment,
        "tracking_uri": loaded.tracking_uri,
        "runs": {"by_status": loaded.run_status, "duplicates": loaded.duplicates, "unfinished": loaded.unfinished},
        "tasks": {task: analyze_table(task, table) for task, table in loaded.tables.items()},
    }


def _jsonable(value):
    """numpy scalars and arrays -> plain Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
