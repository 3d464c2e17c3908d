"""The pretraining stage: (size x pretraining seed) families through Ray Tune, one MLflow run each.

Each trial pretrains one family (`seedlab.train.pretrain.pretrain`), saves its checkpoint and logs one run
(`seedlab.kind = pretrain`, tagged with `PretrainConfig.key()`) whose `checkpoint/` artifact
`seedlab.store.checkpoints.find_checkpoint` resolves. A family already FINISHED anywhere in the store is skipped.
Every store call goes through `seedlab.store.contract`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from seedlab import __version__
from seedlab.store.contract import (CHECKPOINT_DIR, KIND_PRETRAIN, TAG_GIT, TAG_KIND, TAG_PRETRAIN_KEY, TAG_VERSION,
                                    client, finished_runs_by_tag, first_run, get_or_create_experiment, git_commit,
                                    log_run, pretrain_run_name, resolve_tracking_uri, retry)
from seedlab.train.pretrain import (PretrainConfig, PretrainResult, pretrain, pretrain_seeds, save_checkpoint,
                                    stage_configs)

# GPU fraction per size for pretraining trials (larger than fine-tuning's: pretraining is the long job).
PRETRAIN_GPU_FRACTION = {"tiny": 0.25, "mini": 0.25, "small": 0.5, "medium": 0.5, "base": 1.0, "large": 1.0}


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


def finished_pretrain_runs(store, experiment_ids: list[str]) -> dict[str, str]:
    """{pretrain key: run id} of the FINISHED pretraining runs of these experiments."""
    return finished_runs_by_tag(store, experiment_ids, KIND_PRETRAIN, TAG_PRETRAIN_KEY)


def log_pretrain_run(store, experiment_id: str, result: PretrainResult, checkpoint: Path, context: dict) -> str:
    """One FINISHED MLflow run: params, loss curve, before/after metrics, throughput, `checkpoint/` artifact."""
    config = result.config
    params = {**config.as_params(), **pretrain_seeds(config.pretrain_seed), "device": result.device,
              "precision": "bf16-autocast" if result.device.startswith("cuda") else "fp32",
              "num_train_blocks": result.num_train_blocks, "vocab_size": result.tokenizer.vocab_size,
              "num_parameters": sum(p.numel() for p in result.model.parameters()),
              "eval_masked_tokens": result.after["masked_tokens"]}
    tags = {TAG_KIND: KIND_PRETRAIN, TAG_PRETRAIN_KEY: config.key(), TAG_GIT: context.get("git_commit", "unknown"),
            TAG_VERSION: __version__}
    return log_run(store, experiment_id, pretrain_run_name(config.size, config.pretrain_seed),
                   params, result.metrics(), tags, {CHECKPOINT_DIR: str(checkpoint)})


def run_pretrain_trial(config: dict) -> dict:
    """The Ray Tune trainable: {"job": PretrainConfig fields, "context": {tracking_uri, experiment_id, git_commit}}.
    Skips a family already FINISHED in the store, so retries never duplicate a run."""
    from ray import tune

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


def run_pretrain_stage(sizes=(), pretrain_seeds=(), config_by_size: dict | None = None, experiment: str | None = None,
                       tracking_uri: str | None = None, resources: StageResources | None = None,
                       max_failures: int = 2, max_concurrent: int | None = None, out=sys.stdout,
                       families=None) -> StageResult:
    """Pretrain every (size, seed) family not yet FINISHED, one Ray Tune trial each, logging to `experiment`.

    A family counts as done when a FINISHED run of exactly its configuration (`PretrainConfig.key()`) exists in
    any experiment of the store: `find_checkpoint` resolves by key across experiments too, so two sweeps
    that pretrain the same family (say bert_sizes and mitigation) share one checkpoint.
    `families`: the (size, seed) pairs to pretrain, instead of every size x every seed."""
    import ray
    from ray import tune

    from seedlab.run.progress import SweepProgress, tune_callback
    from seedlab.store.checkpoints import pretrain_experiment

    families = families if families is not None else [(m, p) for m in sizes for p in pretrain_seeds]
    configs = stage_configs(families, config_by_size=config_by_size or {})
    resources = resources or StageResources()
    experiment = experiment or pretrain_experiment()
    uri = resolve_tracking_uri(tracking_uri)
    store = client(uri)
    experiment_id = get_or_create_experiment(store, experiment, uri)
    every_experiment = [e.experiment_id for e in retry(store.search_experiments)]
    done = finished_pretrain_runs(store, every_experiment)
    todo = [c for c in configs if c.key() not in done]
    print(f"[pretrain] experiment {experiment!r} at {uri}: {len(configs)} families, "
          f"{len(configs) - len(todo)} already pretrained (in this store), {len(todo)} to run", file=out, flush=True)
    failed = 0
    if todo:
        from seedlab.run.ray_runtime import init_ray

        init_ray(out)
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
        m = retry(store.get_run, run_id).data.metrics
        before, after = m.get("val_perplexity_before"), m.get("val_perplexity_after")
        if before is not None and after is not None:
            print(f"[pretrain] {size}/p{seed}: held-out MLM perplexity {before:.0f} -> {after:.0f}", file=out, flush=True)
    return StageResult(experiment, experiment_id, len(configs), len(configs) - len(todo), len(todo) - failed,
                       failed, run_ids)
