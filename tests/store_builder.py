"""Inputs of the analysis for tests: a real SQLite MLflow store of trial runs, logged the way a sweep logs them
(store.contract.log_run), and the loader's output for simulated tables without a store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from seedlab.analysis.loader import LoadedExperiment
from seedlab.data.tasks import EVAL_SPLIT
from seedlab.stats.design import RunTable
from seedlab.store.contract import (KIND_TRIAL, PREDICTIONS_DIR, REPRESENTATIONS_DIR, TAG_KIND, TAG_TRIAL_KEY, client,
                                    get_or_create_experiment, log_run, trial_run_name)
from seedlab.store.predictions import write_predictions, write_representations


def log_table(store, experiment_id: str, table: RunTable, tmp_path: Path, representations: dict | None = None) -> None:
    """Log every run of `table` as a FINISHED trial run with its predictions (and, for the run ids in
    `representations`, its (layers, instances, hidden) first-token states)."""
    methods = table.methods_per_run()
    for i, run in enumerate(table.run_ids):
        local = Path(tmp_path) / "artifacts" / f"{table.task}-{i}"
        probs = None if table.probs is None else table.probs[i]
        write_predictions(local / PREDICTIONS_DIR / f"{EVAL_SPLIT}.parquet", table.instance_ids, table.labels,
                          table.predictions[i], probs)
        if representations and run in representations:
            write_representations(local / REPRESENTATIONS_DIR / f"{EVAL_SPLIT}.safetensors", representations[run])
        params = {"task": table.task, "model": table.model[i], "pretrain_seed": int(table.pretrain_seed[i]),
                  "finetune_seed": int(table.finetune_seed[i]), "method": methods[i]}
        if table.hp_config is not None:
            params["hp_config"] = table.hp_config[i]
        name = trial_run_name(table.task, table.model[i], int(table.pretrain_seed[i]), int(table.finetune_seed[i]),
                              methods[i])
        log_run(store, experiment_id, name, params, [],
                {TAG_KIND: KIND_TRIAL, TAG_TRIAL_KEY: f"{table.task}-{run}"}, {"": str(local)})


def build_store(tmp_path: Path, experiment: str, tables: list[RunTable], representations: dict | None = None) -> str:
    """A store at `tmp_path` with one experiment holding every run of `tables`; returns its tracking URI.
    `representations`: {task: {run id: states}} for the runs that log them."""
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    store = client(uri)
    exp_id = get_or_create_experiment(store, experiment, uri)
    for table in tables:
        log_table(store, exp_id, table, tmp_path, (representations or {}).get(table.task))
    return uri


def representations_for(table: RunTable, *, layers: int = 4, hidden: int = 8, rng=0) -> dict[str, np.ndarray]:
    """(layers, instances, hidden) states per run: a shared base plus run noise that grows with the layer."""
    gen = np.random.default_rng(rng)
    base = gen.normal(size=(layers, table.n_instances, hidden))
    scale = np.linspace(0.1, 0.6, layers)[:, None, None]
    return {run: (base + scale * gen.normal(size=base.shape)).astype(np.float16) for run in table.run_ids}


def loaded_experiment(tables: list[RunTable], representations: dict | None = None,
                      experiment: str = "simulated") -> LoadedExperiment:
    """What `load_experiment` returns for these tables (one per task), without a store: `analyze` runs on it.
    `representations`: {task: {run id: states}}."""
    return LoadedExperiment(experiment, "0", "sqlite:///unused.db", {t.task: t for t in tables},
                            {"FINISHED": sum(t.n_runs for t in tables)}, [], [], [], representations or {})


def regression_table(task: str, models: list[str], *, P: int, F: int, m: int, rng: int) -> RunTable:
    """A regression task (float targets, no probabilities): predictions = targets + noise growing with the seed."""
    gen = np.random.default_rng(rng)
    labels = gen.uniform(0, 5, m)
    cells = [(mo, p, f) for mo in models for p in range(P) for f in range(F)]
    preds = np.stack([labels + gen.normal(0, 0.5 + 0.2 * p, m) for _, p, _ in cells])
    return RunTable.from_arrays(task, labels, [c[0] for c in cells], [c[1] for c in cells], [c[2] for c in cells],
                                preds, is_regression=True)


def drop_runs(table: RunTable, keep) -> RunTable:
    """The runs of `table` where the (n,) bool mask `keep` is True."""
    keep = np.asarray(keep)
    return replace(table, run_ids=table.run_ids[keep], model=table.model[keep],
                   pretrain_seed=table.pretrain_seed[keep], finetune_seed=table.finetune_seed[keep],
                   predictions=table.predictions[keep], probs=None if table.probs is None else table.probs[keep],
                   method=None if table.method is None else table.method[keep],
                   hp_config=None if table.hp_config is None else table.hp_config[keep])
