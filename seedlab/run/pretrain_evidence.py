"""Evidence that seedlab's pretraining is real: pretrained vs random init of the same seed, same fine-tuning budget.

An experiment, not a stage: no Ray, no MLflow. Each size is pretrained once, its checkpoint put in a
temporary `$SEEDLAB_CHECKPOINTS`, and SST-2 fine-tuned (`seedlab.run.trial.execute_trial`) from the checkpoint
and from the random backbone at each fine-tuning learning rate. `seedlab pretrain --evidence` runs it; the
measured results are in docs/pretraining.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
from unittest import mock

import numpy as np

from seedlab.errors import SeedlabError
from seedlab.run.trial import execute_trial
from seedlab.store.checkpoints import checkpoint_dir
from seedlab.train.pretrain import PretrainConfig, pretrain, save_checkpoint

EVIDENCE_PRETRAIN = {  # a few CPU minutes each on 2 cores
    "tiny": {"max_steps": 1500, "batch_size": 64, "learning_rate": 2e-3, "warmup_ratio": 0.06, "max_seq_length": 64},
    "mini": {"max_steps": 800, "batch_size": 64, "learning_rate": 1e-3, "warmup_ratio": 0.06, "max_seq_length": 64},
}
EVIDENCE_FINETUNE = {"task": "sst2", "hparams": {"learning_rate": 3e-4, "batch_size": 32, "epochs": 2,
                                                 "max_seq_length": 64},
                     "data": {"max_train": 2000, "max_eval": None}}


def evidence(sizes=("tiny",), pretrain_seed: int = 0, finetune_seeds=(0, 1, 2), pretrain_overrides: dict | None = None,
             finetune: dict | None = None, learning_rates=(3e-4, 1e-3), device: str | None = None,
             out=sys.stdout) -> dict:
    """Pretrain each size, then fine-tune SST-2 from (a) the checkpoint and (b) random init of the same seed with
    the same budget, at each fine-tuning learning rate (so neither init is judged at a rate that suits only the
    other). No Ray, no MLflow: the checkpoint goes to a temporary $SEEDLAB_CHECKPOINTS."""
    finetune = finetune or EVIDENCE_FINETUNE
    report = {"finetune": finetune, "finetune_seeds": list(finetune_seeds), "learning_rates": list(learning_rates),
              "sizes": {}}
    with (tempfile.TemporaryDirectory(prefix="seedlab-evidence-") as root,
          mock.patch.dict(os.environ, {"SEEDLAB_CHECKPOINTS": root})):  # restored afterwards, as it was
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
