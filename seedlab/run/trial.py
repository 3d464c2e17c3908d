"""One trial: a plain function of its grid cell. Resolve task and model, fine-tune with its seeds,
predict, log one MLflow run. It knows nothing of the grid around it.

A cell is a dict: task, model, pretrain_seed, finetune_seed, optional init/order/dropout seed overrides,
optional `method` (a mitigation method of `seedlab.train.mitigation`, default "standard"),
`hparams` (see `seedlab.train.finetune.Hyperparameters`) and `data` (max_train, max_eval, data_seed).
Optional, and in the resolved cell only when used (so other cells keep their trial keys): `peft` ("lora" or a dict
of `seedlab.train.lora.LoraSettings`, with a `lora_seed` override), `log_adapter` (log the LoRA adapter as
safetensors), `training` (`seedlab.train.finetune.TrainingSettings`: bf16 weights, gradient checkpointing,
gradient accumulation).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from seedlab import __version__
from seedlab.errors import SeedlabError
from seedlab.train.finetune import Encoded, Hyperparameters, TrainingSettings, encode, finetune, predict
from seedlab.train.lora import PEFT_LORA, PEFT_NONE, LoraSettings
from seedlab.train.mitigation import prepare, validate_method
from seedlab.train.seeds import lora_seed, trial_seeds
from seedlab.data.tasks import EVAL_SPLIT, get_task, holdout_split, load_task

# holdout: a fraction of the training split to evaluate on instead of the evaluation split (tuning stages).
DATA_DEFAULTS = {"max_train": None, "max_eval": None, "data_seed": 0, "holdout": None}


def resolve_cell(cell: dict) -> dict:
    """The canonical form of a cell: every seed resolved, every hyperparameter and data setting explicit."""
    seeds = trial_seeds(cell["finetune_seed"], pretrain_seed=cell["pretrain_seed"], init_seed=cell.get("init_seed"),
                        order_seed=cell.get("order_seed"), dropout_seed=cell.get("dropout_seed"))
    method = cell.get("method", "standard")
    validate_method(method)
    lora = LoraSettings.from_cell(cell.get("peft"))
    if lora is None and (cell.get("lora_seed") is not None or cell.get("log_adapter")):
        raise SeedlabError("lora_seed and log_adapter need a LoRA cell (valid: peft='lora' or peft={'r': ...})")
    if lora is not None and method != "standard":
        raise SeedlabError(f"mitigation method {method!r} cannot be combined with LoRA (valid: method 'standard')")
    hparams = Hyperparameters(**cell.get("hparams", {}))
    training = TrainingSettings.from_cell(cell.get("training"))
    if training.grad_accumulation > hparams.batch_size:
        raise SeedlabError(f"grad_accumulation {training.grad_accumulation} exceeds batch_size {hparams.batch_size} "
                           "(valid: at most one micro-batch per row; batch_size is the effective batch)")
    optional = {}
    if lora is not None:
        optional["peft"] = lora.as_cell()
        optional["lora_seed"] = lora_seed(cell["finetune_seed"], pretrain_seed=cell["pretrain_seed"],
                                         override=cell.get("lora_seed"))
        if cell.get("log_adapter"):
            optional["log_adapter"] = True
    if training.as_cell() is not None:
        optional["training"] = training.as_cell()
    return {
        "task": cell["task"],
        "model": cell["model"],
        "method": method,
        "pretrain_seed": int(cell["pretrain_seed"]),
        "finetune_seed": int(cell["finetune_seed"]),
        **seeds,
        "hparams": hparams.as_params(),
        "data": {**DATA_DEFAULTS, **cell.get("data", {})},
        "pretrained": bool(cell.get("pretrained", False)),
        "log_representations": bool(cell.get("log_representations", False)),
        # which pretraining run's checkpoint (a hash of its PretrainConfig), when the sweep pretrains
        **({"pretrain_key": cell["pretrain_key"]} if cell.get("pretrain_key") else {}),
        **optional,
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
    adapter_model: object = None  # the trained peft model, when the cell asks for its adapter to be logged


ADAPTER_DIR = "adapter"  # the artifact folder of a logged LoRA adapter (adapter_model.safetensors, adapter_config.json)


def write_adapter(outcome: TrialOutcome, out_dir: Path) -> Path | None:
    """Save the trial's LoRA adapter (and its fully trained head) under `out_dir/adapter` as safetensors with peft's
    own `save_pretrained`; None when the cell did not ask for it."""
    if outcome.adapter_model is None:
        return None
    folder = Path(out_dir) / ADAPTER_DIR
    outcome.adapter_model.save_pretrained(folder, safe_serialization=True)
    return folder


def execute_trial(cell: dict, device: str | None = None, tracking_uri: str | None = None) -> TrialOutcome:
    """Fine-tune and predict for one cell; no tracking. Deterministic on CPU."""
    import torch

    from seedlab.data.tasks import instance_groups
    from seedlab.store.checkpoints import find_checkpoint, require_checkpoint
    from seedlab.stats.metrics import score
    from seedlab.train.lora import apply_lora, target_modules
    from seedlab.train.models import model_inputs, resolve_model

    torch.use_deterministic_algorithms(True, warn_only=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    c = resolve_cell(cell)
    spec = get_task(c["task"])
    hp = Hyperparameters(**c["hparams"])
    settings = TrainingSettings.from_cell(c.get("training"))
    lora = LoraSettings.from_cell(c.get("peft"))
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    checkpoint = None
    if c["pretrained"] and c.get("pretrain_key"):  # exactly the checkpoint this sweep's pretraining stage made
        checkpoint = require_checkpoint(c["model"], c["pretrain_seed"], key=c["pretrain_key"], tracking_uri=tracking_uri)
    elif c["pretrained"]:  # any finished family for (size, seed), else the random backbone (init_source says which)
        checkpoint = find_checkpoint(c["model"], c["pretrain_seed"], tracking_uri=tracking_uri)
    resolved = resolve_model(c["model"], c["pretrain_seed"], spec.num_labels, c["init_seed"], checkpoint)
    inputs = model_inputs(resolved.model, resolved.tokenizer)  # of the transformers model (peft's forward hides them)
    model = resolved.model
    if lora is not None:
        model = apply_lora(model, lora, c["lora_seed"], resolved.new_modules)
    prepared = prepare(model, c["method"], c["init_seed"])  # in place: prepared.model is model
    model = prepared.model
    data = encoded_splits(c["task"], c["data"], resolved.tokenizer, hp.max_seq_length, input_names=inputs)
    setup = time.perf_counter() - t0
    result = finetune(model, data.train, hp, c["order_seed"], c["dropout_seed"], device,
                      param_groups=prepared.param_groups(hp), after_step=prepared.after_step, settings=settings)
    t1 = time.perf_counter()
    if c["log_representations"]:  # one forward pass gives both
        predictions, probs, representations = predict(model, data.eval, device, return_states=True)
    else:
        (predictions, probs), representations = predict(model, data.eval, device), None
    eval_seconds = time.perf_counter() - t1
    labels = data.eval.labels
    groups = instance_groups(c["task"], data.eval_ids)  # MultiRC: the question of each answer option
    metrics = {f"eval_{name}": score(name, labels, predictions, groups=groups) for name in spec.metrics}
    if str(device).startswith("cuda"):  # absent on CPU
        metrics["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    params = {
        "task": c["task"], "model": c["model"], "method": c["method"], "pretrain_seed": c["pretrain_seed"],
        "finetune_seed": c["finetune_seed"], "init_seed": c["init_seed"], "order_seed": c["order_seed"],
        "dropout_seed": c["dropout_seed"], **c["hparams"], **c["data"], "init_source": resolved.init_source,
        "hp_config": hp_config_id(c["hparams"]), "device": device, "num_train": len(data.train.labels),
        "num_eval": len(data.eval.labels), "train_steps": result.steps,
        "peft": PEFT_NONE if lora is None else PEFT_LORA,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "torch_dtype": settings.weights_dtype(device), "grad_accumulation": settings.grad_accumulation,
        "gradient_checkpointing": settings.gradient_checkpointing,
    }
    if lora is not None:
        params.update({"lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
                       "lora_target_modules": ",".join(target_modules(model)), "lora_seed": c["lora_seed"]})
    timings = {"setup": setup, "train": result.train_seconds, "eval": eval_seconds}
    return TrialOutcome(params, metrics, result.loss_curve, timings, data.eval_ids, labels, predictions, probs,
                        representations, adapter_model=model if c.get("log_adapter") else None)


# --- the data of a trial, tokenized once per node
ENCODING_FORMAT = 2  # bump when `seedlab.train.finetune.encode` or the split rules change what a key holds


@dataclass
class TrialData:
    train: Encoded
    eval: Encoded
    eval_ids: np.ndarray  # (m,) instance ids of the evaluation split, in its order


def encoded_splits(task: str, data: dict, tokenizer, max_seq_length: int, *, input_names=None) -> TrialData:
    """The tokenized (train, eval) splits of `task` under the data settings `data` (max_train, max_eval,
    data_seed, holdout): computed once per node and kept in the process and on disk (`seedlab.data.cache`),
    keyed by the task's source files, the data settings, the length, the model's input names
    (`seedlab.train.finetune.encode`) and the tokenizer's full definition."""
    from seedlab.data.cache import cache_key, cached_arrays
    from seedlab.data.tasks import task_origin

    data = {**DATA_DEFAULTS, **data}

    def compute() -> dict:
        train_ds, eval_ds = load_task(task, data["max_train"], data["max_eval"], data["data_seed"])
        if data["holdout"]:
            train_ds, eval_ds = holdout_split(train_ds, data["holdout"])  # the evaluation split stays unseen
        arrays = {"eval_ids": np.asarray(list(eval_ds["instance_id"]), dtype=str)}
        for split, ds in (("train", train_ds), ("eval", eval_ds)):
            encoded = encode(ds, tokenizer, max_seq_length, input_names=input_names)
            # a field that is None (token_type_ids of a model without them) is absent from the entry
            arrays.update({f"{split}.{f.name}": np.asarray(getattr(encoded, f.name)) for f in fields(Encoded)
                           if getattr(encoded, f.name) is not None})
        return arrays

    identity = tokenizer_identity(tokenizer)
    if identity is None:  # a tokenizer without a serialisable definition: nothing to key a cache entry by
        arrays = compute()
    else:
        names = None if input_names is None else sorted(input_names)
        key = cache_key("encoded", ENCODING_FORMAT, task_origin(task), data, max_seq_length, names, identity)
        arrays = cached_arrays("encodings", key, compute)

    def split(name: str) -> Encoded:
        values = {f.name: arrays.get(f"{name}.{f.name}") for f in fields(Encoded)}
        return Encoded(**{**values, "pad_id": int(values["pad_id"]), "padding_side": str(values["padding_side"])})

    return TrialData(split("train"), split("eval"), arrays["eval_ids"])


_IDENTITIES: dict = {}  # id(tokenizer) -> (tokenizer, identity): the object is held, so its id stays its own


def tokenizer_identity(tokenizer) -> str | None:
    """A hash of everything that decides how `tokenizer` encodes text: its full definition (vocabulary,
    normaliser, pre-tokeniser, post-processor; not the truncation state a previous call left), its class, pad
    id, padding side and the tokenizers/transformers versions. None for a tokenizer without a backend definition."""
    if id(tokenizer) in _IDENTITIES:
        return _IDENTITIES[id(tokenizer)][1]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    import tokenizers
    import transformers

    definition = json.loads(backend.to_str())
    definition.pop("truncation", None)  # set per call by `encode` (max_length): not part of the definition
    definition.pop("padding", None)
    text = json.dumps([type(tokenizer).__name__, tokenizer.pad_token_id, getattr(tokenizer, "padding_side", None),
                       tokenizers.__version__,
                       transformers.__version__, definition], sort_keys=True)
    identity = hashlib.sha256(text.encode()).hexdigest()[:24]
    if len(_IDENTITIES) > 16:
        _IDENTITIES.clear()
    _IDENTITIES[id(tokenizer)] = (tokenizer, identity)
    return identity


# --- the trainable
_FRESH: dict = {}  # what this worker process had before its first trial ran
FULL_COLLECTION_EVERY = 64


def reset_worker_state() -> None:
    """Give the trial about to run the process state a fresh worker gives it, whatever trials ran here before.

    A reused Tune worker (`reuse_actors`) runs many trials in one process. At each trial's start: the previous
    trial's model, optimizer and tensors are released (a garbage collection, and the GPU's cached blocks go back
    to the device for the trials sharing it); the torch RNG is reseeded as at start-up; the deterministic and
    precision flags and the thread count are set back to their start-up values. Mitigation hooks live on the
    model objects a trial builds (`seedlab.train.mitigation.Prepared`), so they go with the model.
    """
    import gc

    import torch

    if not _FRESH:
        _FRESH.update(
            seed=torch.initial_seed(), threads=torch.get_num_threads(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn_benchmark=torch.backends.cudnn.benchmark, cudnn_deterministic=torch.backends.cudnn.deterministic,
            matmul_precision=torch.get_float32_matmul_precision(), dtype=torch.get_default_dtype(), trials=0)
    # The previous trial's objects were made after the last freeze: this collection sees them and not the
    # process's own (modules, the tokenizer, the data memo), frozen as they were at trial starts, so it stays
    # cheap (a full collection after importing torch and transformers takes ~0.1-0.3 s). Every
    # FULL_COLLECTION_EVERY trials everything is collected, so garbage frozen while in use does not pile up.
    _FRESH["trials"] += 1
    if _FRESH["trials"] % FULL_COLLECTION_EVERY == 0:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch.manual_seed(_FRESH["seed"])  # every device's generator, as at start-up
    torch.set_num_threads(_FRESH["threads"])
    torch.use_deterministic_algorithms(_FRESH["deterministic"], warn_only=_FRESH["warn_only"])
    torch.backends.cudnn.benchmark = _FRESH["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = _FRESH["cudnn_deterministic"]
    torch.set_float32_matmul_precision(_FRESH["matmul_precision"])
    torch.set_default_dtype(_FRESH["dtype"])
    torch.set_grad_enabled(True)


_CLIENTS: dict = {}  # tracking URI -> the MlflowClient this process made for it


def _store(uri: str):
    import os

    from seedlab.store.contract import client

    # A link to each trial's run in the worker's log costs a request per trial (MLflow fetches the run to print it).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if uri not in _CLIENTS:
        _CLIENTS[uri] = client(uri)
    return _CLIENTS[uri]


def run_trial(config: dict, cells=None, execute=None) -> dict:
    """The Ray Tune trainable. `config`: {"cell_index": i, "context": {tracking_uri, experiment_id,
    parent_run_id, sweep, git_commit}} with `cells` the sweep's cells, each as JSON text (handed to every
    worker once, by `tune.with_parameters`), or {"cell": ..., "context": ...}. `execute(cell, tracking_uri=)`
    computes the outcome (default `execute_trial`; the benchmarks pass one that skips training).

    Runs in a reused worker: `reset_worker_state` first. Skips cells already FINISHED in the store (so retries
    never duplicate a run). The result dict it returns is the trial's one Tune result (a function trainable's
    return value is reported; reporting it as well would cost the trial a second round trip to the driver)."""
    from seedlab.store.contract import TAG_TRIAL_KEY, first_run

    started = time.perf_counter()
    reset_worker_state()
    reset = time.perf_counter() - started
    cell = json.loads(cells[config["cell_index"]]) if cells is not None else config["cell"]
    ctx = config["context"]
    key = trial_key(cell)
    store = _store(ctx["tracking_uri"])
    existing = first_run(store, [ctx["experiment_id"]], tags={TAG_TRIAL_KEY: key})
    if existing:
        return {"skipped": 1, "run_id": existing.info.run_id}
    checked = time.perf_counter()
    outcome = (execute or execute_trial)(cell, tracking_uri=ctx["tracking_uri"])
    with tempfile.TemporaryDirectory(prefix=f"seedlab-{key}-") as tmp:  # removed once logged, or on failure
        run_id, log_seconds = _log_outcome(store, ctx, cell, key, outcome, Path(tmp))
    return {**outcome.metrics, "run_id": run_id, "skipped": 0, "torch_threads": _FRESH["threads"], "time_reset_s": reset,
            "time_skip_check_s": checked - started - reset, "time_log_s": log_seconds,
            "time_trial_s": time.perf_counter() - checked, **{f"time_{k}_s": v for k, v in outcome.timings.items()}}


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
    adapter = write_adapter(outcome, out_dir)  # only when the cell asks for it (log_adapter)
    if adapter is not None:
        artifacts[ADAPTER_DIR] = str(adapter)
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
