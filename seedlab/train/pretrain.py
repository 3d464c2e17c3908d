"""Masked-LM pretraining from scratch: MultiBERTs-style seed families of every BERT size, offline.

One pretraining seed decides everything random in a family, through separate streams (`pretrain_seeds`):

- initialisation: `torch.manual_seed(seed)` then `BertModel(bert_config(size))`, exactly how
  `seedlab.train.models.resolve_model` draws a random backbone, so step 0 of pretraining IS the random-init
  baseline of that seed (the MLM head is drawn afterwards from its own derived seed);
- data order: a private generator (`pretrain_order`) permutes the packed blocks every epoch;
- masking: a private generator (`pretrain_mask`);
- dropout: the global torch RNG, reseeded (`pretrain_dropout`) right before the loop.

Data: WikiText-2 train, tokenized with the shared WordPiece tokenizer, concatenated and cut into blocks of
`[CLS] + (max_seq_length - 2) tokens + [SEP]` (no padding, no next-sentence task). Masking is BERT's: 15% of
the non-special tokens are chosen; of those 80% -> [MASK], 10% -> a random non-special token, 10% unchanged.
The loss is computed on the chosen positions only (the vocabulary projection runs on 15% of the tokens).

Evaluation: MLM loss / perplexity / accuracy on a fixed subset of WikiText-2 validation blocks with a fixed
masking, the same for every seed and size, before and after pretraining.

`run_pretrain_stage` runs (size x pretraining seed) trials through Ray Tune; each logs one MLflow run
(`seedlab.kind = pretrain`) whose `checkpoint/` artifact `seedlab.store.checkpoints.find_checkpoint` resolves.
`python -m seedlab.train.pretrain --evidence` shows that the pretraining is real (see docs/pretraining.md).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from seedlab.data.catalog import BERT_SIZES
from seedlab.errors import SeedlabError
from seedlab.store.contract import KIND_PRETRAIN as PRETRAIN_KIND, TAG_PRETRAIN_KEY
from seedlab.train.seeds import derive_seed

PRETRAIN_SEED_PURPOSES = ("pretrain_head", "pretrain_order", "pretrain_mask", "pretrain_dropout")
# The validation subset and its masking are fixed: equal for every seed and size, before and after pretraining.
EVAL_BLOCKS_SEED = derive_seed(0, "pretrain_eval_blocks")
EVAL_MASK_SEED = derive_seed(0, "pretrain_eval_mask")
SCHEDULES = ("linear", "cosine")
# GPU fraction per size for pretraining trials (larger than fine-tuning's: pretraining is the long job).
PRETRAIN_GPU_FRACTION = {"tiny": 0.25, "mini": 0.25, "small": 0.5, "medium": 0.5, "base": 1.0, "large": 1.0}


@dataclass(frozen=True)
class PretrainConfig:
    size: str
    pretrain_seed: int
    max_steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.06
    max_seq_length: int = 128
    weight_decay: float = 0.01
    max_train_lines: int | None = None  # first N lines of WikiText-2 train (None: all 17.5k, ~2.4M tokens)
    mlm_probability: float = 0.15
    schedule: str = "linear"  # linear warm-up, then linear or cosine decay to 0
    grad_clip: float = 1.0
    eval_blocks: int = 512  # validation blocks in the fixed held-out subset
    log_every: int = 10

    def validate(self) -> None:
        if self.size not in BERT_SIZES:
            raise SeedlabError(f"unknown BERT size {self.size!r} (valid: {', '.join(BERT_SIZES)})")
        if not isinstance(self.pretrain_seed, int) or isinstance(self.pretrain_seed, bool) or self.pretrain_seed < 0:
            raise SeedlabError(f"invalid pretraining seed {self.pretrain_seed!r} (valid: non-negative integers)")
        if self.schedule not in SCHEDULES:
            raise SeedlabError(f"unknown schedule {self.schedule!r} (valid: {', '.join(SCHEDULES)})")
        if not 8 <= self.max_seq_length <= 512:
            raise SeedlabError(f"invalid max_seq_length {self.max_seq_length} (valid: 8-512)")
        if min(self.max_steps, self.batch_size, self.eval_blocks, self.log_every) < 1 or self.learning_rate <= 0:
            raise SeedlabError("max_steps, batch_size, eval_blocks, log_every and learning_rate must be positive")
        if not 0 <= self.warmup_ratio < 1 or not 0 < self.mlm_probability < 1:
            raise SeedlabError("warmup_ratio must be in [0, 1) and mlm_probability in (0, 1)")

    def as_params(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """A deterministic id of the pretraining this config describes: equal configs, equal keys."""
        canonical = json.dumps(self.as_params(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def pretrain_seeds(pretrain_seed: int) -> dict[str, int]:
    """{head_seed, order_seed, mask_seed, dropout_seed}, each derived from the pretraining seed."""
    return {f"{p.removeprefix('pretrain_')}_seed": derive_seed(pretrain_seed, p) for p in PRETRAIN_SEED_PURPOSES}


# --- data -------------------------------------------------------------------------------------------------

def pack_blocks(lines, tokenizer, max_seq_length: int) -> torch.Tensor:
    """Concatenate the tokenized lines and cut them into [CLS] ... [SEP] blocks: a (blocks, length) tensor."""
    ids = tokenizer(list(lines), add_special_tokens=False, verbose=False)["input_ids"]
    stream = torch.tensor([t for line in ids for t in line], dtype=torch.long)
    body = max_seq_length - 2
    blocks = stream[: len(stream) // body * body].view(-1, body)
    cls = torch.full((len(blocks), 1), tokenizer.cls_token_id, dtype=torch.long)
    sep = torch.full((len(blocks), 1), tokenizer.sep_token_id, dtype=torch.long)
    return torch.cat([cls, blocks, sep], dim=1)


def load_blocks(split: str, tokenizer, max_seq_length: int, max_lines: int | None = None) -> torch.Tensor:
    from itertools import islice

    from seedlab.data.corpus import wikitext_lines

    return pack_blocks(islice(wikitext_lines(split), max_lines), tokenizer, max_seq_length)


def mask_tokens(ids: torch.Tensor, tokenizer, generator: torch.Generator, probability: float = 0.15):
    """BERT masking of a (batch, length) tensor: (inputs, labels), labels -100 where nothing is predicted."""
    special, replacements = _token_sets(tokenizer.vocab_size, tuple(sorted(tokenizer.all_special_ids)))
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & ~torch.isin(ids, special)
    action = torch.rand(ids.shape, generator=generator)  # < 0.8: [MASK]; < 0.9: random token; else unchanged
    random_tokens = replacements[torch.randint(len(replacements), ids.shape, generator=generator)]
    inputs = torch.where(chosen & (action < 0.8), tokenizer.mask_token_id, ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_tokens, inputs)
    labels = torch.where(chosen, ids, -100)
    return inputs, labels


@functools.lru_cache(maxsize=8)
def _token_sets(vocab_size: int, special_ids: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(special ids, the ids a random replacement draws from: every non-special token)."""
    return torch.tensor(special_ids), torch.tensor([i for i in range(vocab_size) if i not in special_ids])


def eval_set(tokenizer, max_seq_length: int, num_blocks: int):
    """The fixed held-out set: a seeded subset of validation blocks, masked with a fixed seed."""
    blocks = load_blocks("validation", tokenizer, max_seq_length)
    chosen = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(EVAL_BLOCKS_SEED))[:num_blocks]
    return mask_tokens(blocks[chosen.sort().values], tokenizer, torch.Generator().manual_seed(EVAL_MASK_SEED))


def block_order(num_blocks: int, batch_size: int, generator: torch.Generator):
    """Endless batches of block indices: a fresh permutation every epoch."""
    while True:
        permutation = torch.randperm(num_blocks, generator=generator)
        for first in range(0, num_blocks, batch_size):
            yield permutation[first : first + batch_size]


# --- model ------------------------------------------------------------------------------------------------

def init_mlm_model(size: str, pretrain_seed: int, vocab_size: int):
    """BertForMaskedLM whose backbone (pooler included) is exactly resolve_model's random backbone of the seed."""
    from transformers import BertForMaskedLM, BertModel

    from seedlab.train.models import bert_config

    config = bert_config(size, vocab_size)
    torch.manual_seed(pretrain_seed)  # as seedlab.train.models.resolve_model: the pretraining seed alone decides it
    backbone = BertModel(config)  # with its pooler, which MLM never trains (kept as drawn, saved, documented)
    torch.manual_seed(pretrain_seeds(pretrain_seed)["head_seed"])
    model = BertForMaskedLM(config)
    model.bert = backbone
    model.tie_weights()  # the decoder shares the (new) word embeddings
    return model


def mlm_loss(model, inputs: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on the masked positions only (blocks are full: no attention mask needed)."""
    hidden = model.bert(input_ids=inputs).last_hidden_state
    masked = labels != -100
    logits = model.cls(hidden[masked]).float()
    loss = torch.nn.functional.cross_entropy(logits, labels[masked], reduction="sum")
    return loss / masked.sum().clamp(min=1) if reduction == "mean" else loss


@torch.no_grad()
def evaluate_mlm(model, inputs: torch.Tensor, labels: torch.Tensor, device: str = "cpu", batch_size: int = 64) -> dict:
    """Token-weighted MLM loss, perplexity (exp of the loss) and accuracy over a masked set."""
    was_training = model.training
    model.eval()
    total = correct = count = 0.0
    for first in range(0, len(inputs), batch_size):
        x, y = inputs[first : first + batch_size].to(device), labels[first : first + batch_size].to(device)
        with _autocast(device):
            hidden = model.bert(input_ids=x).last_hidden_state
            logits = model.cls(hidden[y != -100]).float()
        target = y[y != -100]
        total += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(-1) == target).sum().item()
        count += len(target)
    model.train(was_training)
    loss = total / max(count, 1)
    return {"mlm_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "mlm_accuracy": correct / max(count, 1),
            "masked_tokens": int(count)}


def _autocast(device: str):
    """bf16 mixed precision on GPU; full fp32 on CPU."""
    cuda = device.startswith("cuda")
    return torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda)


def lr_factor(step: int, config: PretrainConfig) -> float:
    """Linear warm-up to the peak, then linear (or cosine) decay to 0 at max_steps."""
    warmup = int(config.warmup_ratio * config.max_steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, config.max_steps - warmup)
    return max(0.0, 1 - progress) if config.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# --- the loop -----------------------------------------------------------------------------------------------

@dataclass
class PretrainResult:
    model: torch.nn.Module
    tokenizer: object
    config: PretrainConfig
    loss_curve: list = field(default_factory=list)  # (step, mean training MLM loss over the last interval)
    before: dict = field(default_factory=dict)  # held-out mlm_loss / perplexity / mlm_accuracy at step 0
    after: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    examples_per_second: float = 0.0
    tokens_per_second: float = 0.0
    num_train_blocks: int = 0
    device: str = "cpu"

    def metrics(self) -> list[tuple[str, float, int]]:
        """(key, value, step) triples for MLflow."""
        rows = [("train_loss", loss, step) for step, loss in self.loss_curve]
        for when, values in (("before", self.before), ("after", self.after)):
            rows += [(f"val_{name}_{when}", v, 0 if when == "before" else self.config.max_steps)
                     for name, v in values.items() if name != "masked_tokens"]
        rows += [("examples_per_second", self.examples_per_second, 0), ("tokens_per_second", self.tokens_per_second, 0),
                 ("train_seconds", self.train_seconds, 0)]
        return rows


def pretrain(config: PretrainConfig, device: str | None = None, on_log=None) -> PretrainResult:
    """Pretrain one (size, seed) family member with masked-LM. Deterministic on CPU for a given thread count."""
    from seedlab.data.tokenizer import load_tokenizer

    config.validate()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    seeds = pretrain_seeds(config.pretrain_seed)
    tokenizer = load_tokenizer()
    train = load_blocks("train", tokenizer, config.max_seq_length, config.max_train_lines)
    if len(train) == 0:
        raise SeedlabError(f"max_train_lines={config.max_train_lines} gives no block of {config.max_seq_length} tokens")
    val_inputs, val_labels = eval_set(tokenizer, config.max_seq_length, config.eval_blocks)
    model = init_mlm_model(config.size, config.pretrain_seed, tokenizer.vocab_size).to(device)
    before = evaluate_mlm(model, val_inputs, val_labels, device)

    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    batches = block_order(len(train), config.batch_size, torch.Generator().manual_seed(seeds["order_seed"]))
    masking = torch.Generator().manual_seed(seeds["mask_seed"])
    torch.manual_seed(seeds["dropout_seed"])  # dropout is the only draw from the global RNG in the loop
    model.train()
    curve, running, examples, start = [], torch.zeros((), device=device), 0, time.perf_counter()
    for step in range(1, config.max_steps + 1):
        batch = train[next(batches)]
        inputs, labels = mask_tokens(batch, tokenizer, masking, config.mlm_probability)
        with _autocast(device):
            loss = mlm_loss(model, inputs.to(device), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        running += loss.detach()
        examples += len(batch)
        if step % config.log_every == 0 or step == config.max_steps:
            curve.append((step, running.item() / (step - (curve[-1][0] if curve else 0))))
            running.zero_()
            if not math.isfinite(curve[-1][1]):  # fail loudly: never save or log a diverged model
                raise SeedlabError(f"pretraining {config.size} seed {config.pretrain_seed} diverged by step {step} "
                                   f"(loss {curve[-1][1]}); lower learning_rate (was {config.learning_rate:g})")
            if on_log is not None:
                on_log(step, config.max_steps, curve[-1][1])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    after = evaluate_mlm(model, val_inputs, val_labels, device)
    return PretrainResult(model, tokenizer, config, curve, before, after, seconds, examples / seconds,
                          examples * config.max_seq_length / seconds, len(train), device)


def save_checkpoint(result: PretrainResult, directory: Path) -> Path:
    """Write a loadable checkpoint (safetensors, config.json, tokenizer, seedlab-pretrain.json) atomically."""
    from seedlab.store.checkpoints import RECORD_FILE

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        result.model.save_pretrained(staging, safe_serialization=True)
        result.tokenizer.save_pretrained(staging)
        record = {"key": result.config.key(), "config": result.config.as_params(), "before": result.before,
                  "after": result.after, "steps": result.config.max_steps, "train_seconds": result.train_seconds,
                  "device": result.device, "pooler": "not trained by MLM: as drawn from the pretraining seed"}
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


# --- the Ray Tune stage -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageResources:
    """Per-trial resources of a pretraining stage, as `seedlab.run.sweep.SweepSpec.resources` does for fine-tuning."""

    cpus_per_trial: float = 1.0
    gpu_fraction: dict = field(default_factory=lambda: dict(PRETRAIN_GPU_FRACTION))  # per size; others: 1.0

    def for_trials(self, use_gpu: bool):
        from ray.tune import PlacementGroupFactory

        def for_trial(config: dict):
            gpu = self.gpu_fraction.get(config["job"]["size"], 1.0) if use_gpu else 0
            return PlacementGroupFactory([{"CPU": self.cpus_per_trial, "GPU": gpu}])

        return for_trial


@dataclass
class StageResult:
    experiment: str
    experiment_id: str
    total: int
    skipped: int
    finished: int
    failed: int
    run_ids: dict  # (size, pretrain_seed) -> run id of its FINISHED pretraining run


def pretrain_config(size: str, pretrain_seed: int, config_by_size: dict) -> PretrainConfig:
    """The validated PretrainConfig of one family; `config_by_size`: {"*": fields for all sizes, size: fields}."""
    valid = {f.name for f in fields(PretrainConfig)} - {"size", "pretrain_seed"}
    overrides = {**config_by_size.get("*", {}), **config_by_size.get(size, {})}
    unknown = set(overrides) - valid
    if unknown:
        raise SeedlabError(f"unknown pretraining setting(s) {sorted(unknown)} (valid: {', '.join(sorted(valid))})")
    config = PretrainConfig(size=size, pretrain_seed=pretrain_seed, **overrides)
    config.validate()
    return config


def stage_configs(sizes, pretrain_seeds, config_by_size: dict) -> list[PretrainConfig]:
    """Every (size, seed) family's PretrainConfig."""
    return [pretrain_config(size, seed, config_by_size) for size in sizes for seed in pretrain_seeds]


def finished_pretrain_runs(store, experiment_ids: list[str]) -> dict[str, str]:
    """{pretrain key: run id} of the FINISHED pretraining runs of these experiments."""
    from seedlab.store.contract import finished_runs_by_tag

    return finished_runs_by_tag(store, experiment_ids, PRETRAIN_KIND, TAG_PRETRAIN_KEY)


def log_pretrain_run(store, experiment_id: str, result: PretrainResult, checkpoint: Path, context: dict) -> str:
    """One FINISHED MLflow run: params, loss curve, before/after metrics, throughput, `checkpoint/` artifact."""
    from seedlab import __version__
    from seedlab.store.contract import CHECKPOINT_DIR, TAG_GIT, TAG_KIND, TAG_VERSION, log_run, pretrain_run_name

    config = result.config
    params = {**config.as_params(), **pretrain_seeds(config.pretrain_seed), "device": result.device,
              "precision": "bf16-autocast" if result.device.startswith("cuda") else "fp32",
              "num_train_blocks": result.num_train_blocks, "vocab_size": result.tokenizer.vocab_size,
              "num_parameters": sum(p.numel() for p in result.model.parameters()),
              "eval_masked_tokens": result.after["masked_tokens"]}
    tags = {TAG_KIND: PRETRAIN_KIND, TAG_PRETRAIN_KEY: config.key(), TAG_GIT: context.get("git_commit", "unknown"),
            TAG_VERSION: __version__}
    return log_run(store, experiment_id, pretrain_run_name(config.size, config.pretrain_seed),
                   params, result.metrics(), tags, {CHECKPOINT_DIR: str(checkpoint)})


def run_pretrain_trial(config: dict) -> dict:
    """The Ray Tune trainable: {"job": PretrainConfig fields, "context": {tracking_uri, experiment_id, git_commit}}.
    Skips a family already FINISHED in the store, so retries never duplicate a run."""
    from ray import tune

    from seedlab.store.contract import client, first_run

    job, ctx = PretrainConfig(**config["job"]), config["context"]
    store = client(ctx["tracking_uri"])
    existing = first_run(store, [ctx["experiment_id"]], tags={TAG_PRETRAIN_KEY: job.key()})
    if existing:
        report = {"skipped": 1, "run_id": existing.info.run_id}
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
        result = pretrain(job)
        out_dir = Path(tempfile.mkdtemp(prefix=f"seedlab-pretrain-{job.key()}-"))
        checkpoint = save_checkpoint(result, out_dir / "checkpoint")
        run_id = log_pretrain_run(store, ctx["experiment_id"], result, checkpoint, ctx)
        shutil.rmtree(out_dir, ignore_errors=True)  # kept when logging failed, for a look
        report = {"skipped": 0, "run_id": run_id, "val_perplexity_before": result.before["perplexity"],
                  "val_perplexity_after": result.after["perplexity"], "train_seconds": result.train_seconds}
    tune.report(report)
    return report


def run_pretrain_stage(sizes, pretrain_seeds, config_by_size: dict | None = None, experiment: str | None = None,
                       tracking_uri: str | None = None, resources: StageResources | None = None,
                       max_failures: int = 2, max_concurrent: int | None = None, out=sys.stdout) -> StageResult:
    """Pretrain every (size, seed) family not yet FINISHED, one Ray Tune trial each, logging to `experiment`.

    A family counts as done when a FINISHED run of exactly its configuration (`PretrainConfig.key()`) exists in
    any experiment of the store: `find_checkpoint` resolves by key across experiments too, so two sweeps
    that pretrain the same family (say bert_sizes and mitigation) share one checkpoint."""
    import ray
    from ray import tune

    from seedlab.store.checkpoints import pretrain_experiment
    from seedlab.run.progress import SweepProgress, tune_callback
    from seedlab.store.contract import client, get_or_create_experiment, git_commit, resolve_tracking_uri

    configs = stage_configs(sizes, pretrain_seeds, config_by_size or {})
    resources = resources or StageResources()
    experiment = experiment or pretrain_experiment()
    uri = resolve_tracking_uri(tracking_uri)
    store = client(uri)
    experiment_id = get_or_create_experiment(store, experiment, uri)
    every_experiment = [e.experiment_id for e in store.search_experiments()]
    done = finished_pretrain_runs(store, every_experiment)
    todo = [c for c in configs if c.key() not in done]
    print(f"[pretrain] experiment {experiment!r} at {uri}: {len(configs)} families, "
          f"{len(configs) - len(todo)} already pretrained (in this store), {len(todo)} to run", file=out, flush=True)
    failed = 0
    if todo:
        if not ray.is_initialized():  # as seedlab.run.sweep: RAY_ADDRESS joins a cluster, else a local runtime starts
            address = os.environ.get("RAY_ADDRESS") or None
            if address and address.startswith("http"):
                address = "auto"
            ray.init(address=address, logging_level="WARNING", include_dashboard=False if address is None else None)
        use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        context = {"tracking_uri": uri, "experiment_id": experiment_id, "git_commit": git_commit()}
        progress = SweepProgress("pretrain", len(todo), out)
        tuner = tune.Tuner(
            tune.with_resources(run_pretrain_trial, resources.for_trials(use_gpu)),
            param_space={"job": tune.grid_search([c.as_params() for c in todo]), "context": context},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
            run_config=tune.RunConfig(name=f"{experiment}-pretrain-{int(time.time())}",
                                      storage_path=os.environ.get("SEEDLAB_RAY_STORAGE"),
                                      failure_config=tune.FailureConfig(max_failures=max_failures),
                                      callbacks=[tune_callback(progress)], verbose=0),
        )
        failed = sum(1 for r in tuner.fit() if r.error is not None)
    done = finished_pretrain_runs(store, every_experiment)
    run_ids = {(c.size, c.pretrain_seed): done[c.key()] for c in configs if c.key() in done}
    print(f"[pretrain] finished: {len(todo) - failed} families pretrained, {failed} failed", file=out, flush=True)
    for (size, seed), run_id in sorted(run_ids.items()):  # the evidence that pretraining did something
        m = store.get_run(run_id).data.metrics
        before, after = m.get("val_perplexity_before"), m.get("val_perplexity_after")
        if before is not None and after is not None:
            print(f"[pretrain] {size}/p{seed}: held-out MLM perplexity {before:.0f} -> {after:.0f}", file=out, flush=True)
    return StageResult(experiment, experiment_id, len(configs), len(configs) - len(todo), len(todo) - failed,
                       failed, run_ids)


# --- evidence: pretrained vs random init, same fine-tuning budget --------------------------------------------

EVIDENCE_PRETRAIN = {  # a few CPU minutes each on 2 cores
    "tiny": {"max_steps": 1500, "batch_size": 64, "learning_rate": 2e-3, "warmup_ratio": 0.06, "max_seq_length": 64},
    "mini": {"max_steps": 800, "batch_size": 64, "learning_rate": 1e-3, "warmup_ratio": 0.06, "max_seq_length": 64},
}
EVIDENCE_FINETUNE = {"task": "sst2", "hparams": {"learning_rate": 3e-4, "batch_size": 32, "epochs": 2,
                                                 "max_seq_length": 64},
                     "data": {"max_train": 2000, "max_eval": None}}


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def evidence(sizes=("tiny",), pretrain_seed: int = 0, finetune_seeds=(0, 1, 2), pretrain_overrides: dict | None = None,
             finetune: dict | None = None, learning_rates=(3e-4, 1e-3), device: str | None = None,
             out=sys.stdout) -> dict:
    """Pretrain each size, then fine-tune SST-2 from (a) the checkpoint and (b) random init of the same seed with
    the same budget, at each fine-tuning learning rate (so neither init is judged at a rate that suits only the
    other). No Ray, no MLflow: the checkpoint goes to a temporary $SEEDLAB_CHECKPOINTS."""
    from seedlab.store.checkpoints import checkpoint_dir
    from seedlab.run.trial import execute_trial

    finetune = finetune or EVIDENCE_FINETUNE
    report = {"finetune": finetune, "finetune_seeds": list(finetune_seeds), "learning_rates": list(learning_rates),
              "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="seedlab-evidence-") as root, _env("SEEDLAB_CHECKPOINTS", root):
        for size in sizes:
            overrides = {**EVIDENCE_PRETRAIN.get(size, EVIDENCE_PRETRAIN["tiny"]), **(pretrain_overrides or {})}
            config = PretrainConfig(**{"size": size, "pretrain_seed": pretrain_seed, "log_every": 100, **overrides})
            print(f"[evidence] pretraining {size} seed {pretrain_seed}: {config.as_params()}", file=out, flush=True)
            result = pretrain(config, device, on_log=lambda s, n, loss: print(
                f"  step {s}/{n} train mlm loss {loss:.3f}", file=out, flush=True))
            save_checkpoint(result, checkpoint_dir(size, pretrain_seed))
            row = {"pretrain": config.as_params(), "before": result.before, "after": result.after,
                   "train_seconds": result.train_seconds, "examples_per_second": result.examples_per_second,
                   "device": result.device, "finetune": {}}
            print(f"  validation perplexity {result.before['perplexity']:.1f} -> {result.after['perplexity']:.1f} "
                  f"(MLM accuracy {result.before['mlm_accuracy']:.3f} -> {result.after['mlm_accuracy']:.3f}) "
                  f"in {result.train_seconds:.0f}s on {result.device}", file=out, flush=True)
            for lr in learning_rates:
                for pretrained in (True, False):
                    scores = []
                    for seed in finetune_seeds:
                        cell = {**finetune, "hparams": {**finetune["hparams"], "learning_rate": lr}, "model": size,
                                "pretrain_seed": pretrain_seed, "finetune_seed": seed, "pretrained": pretrained}
                        outcome = execute_trial(cell, device=device)
                        if outcome.params["init_source"].startswith("checkpoint") != pretrained:
                            raise SeedlabError(f"evidence: expected a {'pretrained' if pretrained else 'random'} "
                                               f"backbone, got {outcome.params['init_source']}")
                        scores.append(outcome.metrics["eval_accuracy"])
                    name = "pretrained" if pretrained else "random"
                    row["finetune"][f"{name}@{lr:g}"] = {"accuracy": scores, "mean": float(np.mean(scores))}
                    print(f"  SST-2 dev accuracy, {name:>10} init, lr {lr:g}: mean {np.mean(scores):.4f} "
                          f"(seeds {list(finetune_seeds)}: {', '.join(f'{s:.4f}' for s in scores)})",
                          file=out, flush=True)
            for name in ("pretrained", "random"):
                best = max((v["mean"], k) for k, v in row["finetune"].items() if k.startswith(name + "@"))
                row[f"best_{name}"] = {"mean": best[0], "at": best[1]}
            print(f"  best: pretrained {row['best_pretrained']['mean']:.4f} ({row['best_pretrained']['at']}) vs "
                  f"random {row['best_random']['mean']:.4f} ({row['best_random']['at']})", file=out, flush=True)
            report["sizes"][size] = row
    return report


# --- command line (`python -m seedlab.train.pretrain`; the lead wires the same into `seedlab pretrain`) ---------------

def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--sizes", default="tiny", help=f"comma-separated BERT sizes ({', '.join(BERT_SIZES)})")
    parser.add_argument("--seeds", default="0", help="pretraining seeds: '0,1,2' or a range '0-9'")
    for f in fields(PretrainConfig):
        if f.name not in ("size", "pretrain_seed"):
            kind = {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0], int)
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                                help=f"PretrainConfig.{f.name} (default {f.default})")
    parser.add_argument("--experiment", help="MLflow experiment (default: $SEEDLAB_PRETRAIN_EXPERIMENT or "
                                             "seedlab-pretrain)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else ./mlruns")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--max-concurrent", type=int)
    parser.add_argument("--evidence", action="store_true", help="pretrain, then fine-tune SST-2 from the checkpoint "
                        "and from random init with the same budget; report both (no Ray, no MLflow)")
    parser.add_argument("--finetune-seeds", default="0,1,2", help="with --evidence")
    parser.add_argument("--finetune-lrs", default="3e-4,1e-3", help="with --evidence: fine-tuning learning rates")
    parser.add_argument("--json", metavar="PATH", help="with --evidence: also write the report as JSON")
    return parser


def _seeds(text: str) -> list[int]:
    try:
        if "-" in text:
            low, high = text.split("-")
            return list(range(int(low), int(high) + 1))
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SeedlabError(f"invalid seeds {text!r} (valid: '0,1,2' or '0-9')") from None


def command(args) -> int:
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    overrides = {f.name: getattr(args, f.name) for f in fields(PretrainConfig)
                 if f.name not in ("size", "pretrain_seed") and getattr(args, f.name, None) is not None}
    if args.evidence:
        learning_rates = [float(x) for x in args.finetune_lrs.split(",") if x.strip()]
        report = evidence(sizes, _seeds(args.seeds)[0], _seeds(args.finetune_seeds), overrides or None,
                          learning_rates=learning_rates)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return 0
    result = run_pretrain_stage(sizes, _seeds(args.seeds), {"*": overrides}, args.experiment, args.tracking_uri,
                                StageResources(cpus_per_trial=args.cpus_per_trial), max_concurrent=args.max_concurrent)
    return 1 if result.failed else 0


def main(argv=None, prog: str = "python -m seedlab.train.pretrain") -> int:
    parser = add_arguments(argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0]))
    try:
        return command(parser.parse_args(argv))
    except SeedlabError as exc:
        print(f"seedlab: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the importable module, not __main__: Ray pickles the trainable by reference to seedlab.train.pretrain.
    from seedlab.train.pretrain import main as _main

    sys.exit(_main())
