"""One trial: a plain function of its grid cell. Resolve task and model, fine-tune with its seeds,
predict, log one MLflow run. It knows nothing of the grid around it.

A cell is a dict: task, model, pretrain_seed, finetune_seed, optional init/order/dropout seed overrides,
optional `method` (a mitigation method of `seedlab.train.mitigation`, default "standard"),
`hparams` (see `seedlab.train.finetune.Hyperparameters`) and `data` (max_train, max_eval, data_seed).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seedlab import __version__
from seedlab.train.finetune import Hyperparameters, encode, finetune, predict
from seedlab.train.mitigation import prepare, validate_method
from seedlab.train.seeds import trial_seeds
from seedlab.data.tasks import EVAL_SPLIT, get_task, holdout_split, load_task

# holdout: a fraction of the training split to evaluate on instead of the evaluation split (tuning stages).
DATA_DEFAULTS = {"max_train": None, "max_eval": None, "data_seed": 0, "holdout": None}


def resolve_cell(cell: dict) -> dict:
    """The canonical form of a cell: every seed resolved, every hyperparameter and data setting explicit."""
    seeds = trial_seeds(cell["finetune_seed"], pretrain_seed=cell["pretrain_seed"], init_seed=cell.get("init_seed"),
                        order_seed=cell.get("order_seed"), dropout_seed=cell.get("dropout_seed"))
    method = cell.get("method", "standard")
    validate_method(method)
    return {
        "task": cell["task"],
        "model": cell["model"],
        "method": method,
        "pretrain_seed": int(cell["pretrain_seed"]),
        "finetune_seed": int(cell["finetune_seed"]),
        **seeds,
        "hparams": Hyperparameters(**cell.get("hparams", {})).as_params(),
        "data": {**DATA_DEFAULTS, **cell.get("data", {})},
        "pretrained": bool(cell.get("pretrained", False)),
        "log_representations": bool(cell.get("log_representations", False)),
        # which pretraining run's checkpoint (a hash of its PretrainConfig), when the sweep pretrains
        **({"pretrain_key": cell["pretrain_key"]} if cell.get("pretrain_key") else {}),
    }


def trial_key(cell: dict) -> str:
    """A deterministic id of the computation a cell describes: equal cells, equal keys (`contract.trial_key`).

    The method enters the key only when it is not "standard", so runs logged before mitigation methods existed
    keep their keys (and are not run again)."""
    from seedlab.store.contract import trial_key as key_of_resolved

    resolved = resolve_cell(cell)
    if resolved["method"] == "standard":
        del resolved["method"]
    return key_of_resolved(resolved)


def hp_config_id(hparams: dict) -> str:
    """A short id of a hyperparameter configuration, so runs of one config can be grouped in analysis."""
    canonical = json.dumps(Hyperparameters(**hparams).as_params(), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def run_name(cell: dict) -> str:
    from seedlab.store.contract import trial_run_name

    return trial_run_name(cell["task"], cell["model"], cell["pretrain_seed"], cell["finetune_seed"],
                          cell.get("method", "standard"))


@dataclass
class TrialOutcome:
    params: dict
    metrics: dict  # eval_<metric> -> value
    loss_curve: list
    timings: dict  # seconds: setup, train, eval
    instance_ids: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    probs: np.ndarray | None
    representations: np.ndarray | None = None  # (L, m, d) float16 first-token states, when asked for


def execute_trial(cell: dict, device: str | None = None, tracking_uri: str | None = None) -> TrialOutcome:
    """Fine-tune and predict for one cell; no tracking. Deterministic on CPU."""
    import torch

    from seedlab.store.checkpoints import find_checkpoint, require_checkpoint
    from seedlab.stats.metrics import score
    from seedlab.train.models import resolve_model

    torch.use_deterministic_algorithms(True, warn_only=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    c = resolve_cell(cell)
    spec = get_task(c["task"])
    hp = Hyperparameters(**c["hparams"])
    t0 = time.perf_counter()
    train_ds, eval_ds = load_task(c["task"], c["data"]["max_train"], c["data"]["max_eval"], c["data"]["data_seed"])
    if c["data"]["holdout"]:
        train_ds, eval_ds = holdout_split(train_ds, c["data"]["holdout"])  # the evaluation split stays unseen
    checkpoint = None
    if c["pretrained"] and c.get("pretrain_key"):  # exactly the checkpoint this sweep's pretraining stage made
        checkpoint = require_checkpoint(c["model"], c["pretrain_seed"], key=c["pretrain_key"], tracking_uri=tracking_uri)
    elif c["pretrained"]:  # any finished family for (size, seed), else the random backbone (init_source says which)
        checkpoint = find_checkpoint(c["model"], c["pretrain_seed"], tracking_uri=tracking_uri)
    resolved = resolve_model(c["model"], c["pretrain_seed"], spec.num_labels, c["init_seed"], checkpoint)
    prepared = prepare(resolved.model, c["method"], c["init_seed"])  # in place: prepared.model is resolved.model
    model = prepared.model
    train_enc = encode(train_ds, resolved.tokenizer, hp.max_seq_length)
    eval_enc = encode(eval_ds, resolved.tokenizer, hp.max_seq_length)
    setup = time.perf_counter() - t0
    result = finetune(model, train_enc, hp, c["order_seed"], c["dropout_seed"], device,
                      param_groups=prepared.param_groups(hp), after_step=prepared.after_step)
    t1 = time.perf_counter()
    if c["log_representations"]:  # one forward pass gives both
        predictions, probs, representations = predict(model, eval_enc, device, return_states=True)
    else:
        (predictions, probs), representations = predict(model, eval_enc, device), None
    eval_seconds = time.perf_counter() - t1
    labels = eval_enc.labels
    metrics = {f"eval_{name}": score(name, labels, predictions) for name in spec.metrics}
    params = {
        "task": c["task"], "model": c["model"], "method": c["method"], "pretrain_seed": c["pretrain_seed"],
        "finetune_seed": c["finetune_seed"], "init_seed": c["init_seed"], "order_seed": c["order_seed"],
        "dropout_seed": c["dropout_seed"], **c["hparams"], **c["data"], "init_source": resolved.init_source,
        "hp_config": hp_config_id(c["hparams"]), "device": device, "num_train": len(train_ds), "num_eval": len(eval_ds), "train_steps": result.steps,
    }
    timings = {"setup": setup, "train": result.train_seconds, "eval": eval_seconds}
    return TrialOutcome(params, metrics, result.loss_curve, timings, np.asarray(list(eval_ds["instance_id"])),
                        labels, predictions, probs, representations)


def run_trial(config: dict) -> dict:
    """The Ray Tune trainable. `config`: {"cell": ..., "context": {tracking_uri, experiment_id, parent_run_id,
    sweep, git_commit}}. Skips cells already FINISHED in the store (so retries never duplicate a run)."""
    from seedlab.store.contract import TAG_TRIAL_KEY, client, first_run

    cell, ctx = config["cell"], config["context"]
    key = trial_key(cell)
    store = client(ctx["tracking_uri"])
    existing = first_run(store, [ctx["experiment_id"]], tags={TAG_TRIAL_KEY: key})
    if existing:
        return _report({"skipped": 1, "run_id": existing.info.run_id})
    started = time.perf_counter()
    outcome = execute_trial(cell, tracking_uri=ctx["tracking_uri"])
    with tempfile.TemporaryDirectory(prefix=f"seedlab-{key}-") as tmp:  # removed once logged, or on failure
        run_id, log_seconds = _log_outcome(store, ctx, cell, key, outcome, Path(tmp))
    return _report({**outcome.metrics, "run_id": run_id, "skipped": 0, "time_log_s": log_seconds,
                    "time_trial_s": time.perf_counter() - started,
                    **{f"time_{k}_s": v for k, v in outcome.timings.items()}})


def _log_outcome(store, ctx: dict, cell: dict, key: str, outcome: TrialOutcome, out_dir: Path) -> tuple[str, float]:
    """Write the outcome's artifacts into `out_dir` and log the trial's one run; (run id, seconds spent)."""
    import ray

    from seedlab.store.contract import (KIND_TRIAL, PREDICTIONS_DIR, REPRESENTATIONS_DIR, TAG_GIT, TAG_KIND, TAG_NODE,
                                        TAG_SWEEP, TAG_TRIAL_KEY, TAG_TUNING_CHOICE, TAG_VERSION, log_run)
    from seedlab.store.predictions import write_predictions, write_representations

    parquet = write_predictions(out_dir / f"{EVAL_SPLIT}.parquet", outcome.instance_ids, outcome.labels,
                                outcome.predictions, outcome.probs)
    artifacts = {PREDICTIONS_DIR: str(parquet)}
    if outcome.representations is not None:
        artifacts[REPRESENTATIONS_DIR] = str(write_representations(out_dir / f"{EVAL_SPLIT}.safetensors",
                                                                   outcome.representations))
    t_log = time.perf_counter()
    metrics = [(k, v, 0) for k, v in outcome.metrics.items()]
    metrics += [("train_loss", loss, step) for step, loss in outcome.loss_curve]
    metrics += [(f"time_{k}_s", v, 0) for k, v in outcome.timings.items()]
    tags = {TAG_KIND: KIND_TRIAL, TAG_SWEEP: ctx["sweep"], TAG_TRIAL_KEY: key, TAG_GIT: ctx.get("git_commit", "unknown"),
            TAG_VERSION: __version__, TAG_NODE: ray.get_runtime_context().get_node_id()}
    if cell.get("tuning_choice"):
        tags[TAG_TUNING_CHOICE] = cell["tuning_choice"]  # the tuning run that chose these hyperparameters
    run_id = log_run(store, ctx["experiment_id"], run_name(cell), outcome.params, metrics, tags,
                     artifacts, parent_run_id=ctx.get("parent_run_id"))
    return run_id, time.perf_counter() - t_log


def _report(result: dict) -> dict:
    from ray import tune

    tune.report(result)
    return result
