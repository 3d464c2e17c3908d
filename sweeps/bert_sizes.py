"""Zhong et al. (2021): BERT sizes x pretraining seeds x fine-tuning seeds, instance by instance.

    python sweeps/bert_sizes.py --profile smoke               # one machine, a few minutes on CPU
    ray job submit --working-dir . -- python sweeps/bert_sizes.py --profile paper   # a GPU cluster

This file only declares what to run; seedlab does the rest.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seedlab.run.sweep import SweepSpec, sweep_main  # noqa: E402

# Masked-LM pretraining per size (seedlab.train.pretrain.PretrainConfig fields); "*" applies to every size.
SMOKE_PRETRAIN = {"*": {"max_seq_length": 64, "batch_size": 32, "max_train_lines": 4000, "eval_blocks": 128},
                  "tiny": {"max_steps": 150, "learning_rate": 2e-3}, "mini": {"max_steps": 50, "learning_rate": 1e-3}}
# Sized for one 2-core machine (measured at 1 thread per trial, unloaded: ~0.35 / 1.3 / 4 s per step for
# tiny / mini / small); `small` is here for `--models small`, the cpu profile leaves it out for time.
CPU_PRETRAIN = {"*": {"max_seq_length": 64, "batch_size": 64},
                "tiny": {"max_steps": 600, "learning_rate": 2e-3}, "mini": {"max_steps": 200, "learning_rate": 1e-3},
                "small": {"max_steps": 80, "learning_rate": 1e-3}}
PAPER_PRETRAIN = {"*": {"max_seq_length": 128, "batch_size": 128, "warmup_ratio": 0.06},
                  "mini": {"max_steps": 5000, "learning_rate": 1e-3}, "small": {"max_steps": 10000, "learning_rate": 5e-4},
                  "medium": {"max_steps": 10000, "learning_rate": 5e-4},
                  "base": {"max_steps": 10000, "learning_rate": 2e-4}, "large": {"max_steps": 10000, "learning_rate": 1e-4}}

PROFILES = {
    # CPU, minutes: pretrain 2 sizes x 2 seeds briefly, then fine-tune 2 seeds each on a subsample of SST-2.
    "smoke": SweepSpec(
        name="smoke",
        tasks=("sst2",),
        models=("tiny", "mini"),
        pretrain_seeds=(0, 1),
        finetune_seeds=(0, 1),
        hparams={"learning_rate": 1e-3, "batch_size": 32, "epochs": 2, "max_seq_length": 64},
        data={"max_train": 1000, "max_eval": 872},
        pretrained=True,
        pretrain=SMOKE_PRETRAIN,
        description="end-to-end check on CPU",
    ),
    # A small study of our own for one 2-core machine (about an hour): docs/results/bert_sizes_cpu.md.
    # Fine-tuning needs ~190 steps here: at 1,000 examples (63 steps) every model, pretrained or random, stayed
    # on the majority class. The learning rates are per size (Zhong et al. tuned them per size too): mini stays
    # on the majority class at 1e-3, tiny learns little at 3e-4 (measured on SST-2, pretraining seed 0).
    "cpu": SweepSpec(
        name="cpu",
        tasks=("sst2", "rte"),
        models=("tiny", "mini"),
        pretrain_seeds=(0, 1, 2),
        finetune_seeds=(0, 1, 2),
        hparams={"learning_rate": 1e-3, "batch_size": 32, "epochs": 2, "max_seq_length": 64},
        model_hparams={"mini": {"learning_rate": 3e-4}},
        data={"max_train": 3000},
        pretrained=True,
        pretrain=CPU_PRETRAIN,
        description="2 sizes x 3 pretraining seeds x 3 fine-tuning seeds on CPU",
    ),
    # The Zhong et al. grid for a GPU cluster: 5 sizes x 10 pretraining seeds x 5 fine-tuning seeds x 3 tasks.
    "paper": SweepSpec(
        name="paper",
        tasks=("mnli", "qqp", "sst2"),
        models=("mini", "small", "medium", "base", "large"),
        pretrain_seeds=tuple(range(10)),
        finetune_seeds=tuple(range(5)),
        hparams={"learning_rate": 5e-5, "batch_size": 32, "epochs": 3, "max_seq_length": 128},
        cpus_per_trial=2,
        pretrained=True,
        pretrain=PAPER_PRETRAIN,
        description="Zhong et al. 2021 design",
    ),
}

if __name__ == "__main__":
    sys.exit(sweep_main(PROFILES, default_experiment="bert_sizes"))
