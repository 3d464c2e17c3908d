"""A seed study of a real pretrained model: how much of its fine-tuned result is the random seed?

    python sweeps/seed_study.py --profile demo     # what `make demo` runs: CPU, a few minutes
    python sweeps/seed_study.py --profile cpu      # the study in docs/results/seed_study_cpu.md (~30 min, 2 cores)
    ray job submit --working-dir . -- python sweeps/seed_study.py --profile paper   # a GPU cluster, hub checkpoints

Two models, both fine-tuned over several fine-tuning seeds:
- `minilm`: the published all-MiniLM-L6-v2 checkpoint (shipped offline in a pip package), one pretraining seed;
- `minilm+mlm`: seed families of it: its masked-LM pretraining continued on WikiText-2, each family with its own
  pretraining seed (new MLM head, data order, masking, dropout), the way domain-adaptive pretraining families
  are made. Their spread over pretraining seeds is pretraining noise (PretVar), beside fine-tuning noise (FineVar).
What "pretraining seed" means here, and what it does not let you conclude: docs/pretraining.md.

This file only declares what to run; seedlab does the rest.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seedlab.run.sweep import SweepSpec, sweep_main  # noqa: E402

# Continued masked-LM pretraining of the published checkpoint (seedlab.train.pretrain.PretrainConfig fields).
DEMO_PRETRAIN = {"minilm+mlm": {"max_steps": 30, "batch_size": 16, "max_seq_length": 64, "learning_rate": 1e-4,
                                "max_train_lines": 4000, "eval_blocks": 64, "warmup_ratio": 0.1}}
CPU_PRETRAIN = {"minilm+mlm": {"max_steps": 100, "batch_size": 32, "max_seq_length": 64, "learning_rate": 1e-4,
                               "eval_blocks": 256, "warmup_ratio": 0.1}}
PAPER_PRETRAIN = {"minilm+mlm": {"max_steps": 10000, "batch_size": 128, "max_seq_length": 128,
                                 "learning_rate": 5e-5, "warmup_ratio": 0.06}}

PROFILES = {
    # make demo: 2 fine-tuning seeds of the published checkpoint, 3 of each of 2 seed families: 8 runs, SST-2
    # (an even number: on 2 cores, 4 rounds of 2 trials; a 9th run would train alone for a whole round).
    "demo": SweepSpec(
        name="demo",
        tasks=("sst2",),
        models=("minilm", "minilm+mlm"),
        pretrain_seeds=(1, 2),
        model_pretrain_seeds={"minilm": (0,)},  # the published checkpoint is one pretraining seed
        finetune_seeds=(0, 1, 2),
        model_finetune_seeds={"minilm": (0, 1)},
        # measured on SST-2 (docs/results/seed_study_cpu.md: 0.784 for minilm): 500 examples x 2 epochs at 1e-4
        # is the cheapest budget at which MiniLM-L6 reaches ~0.78 with a visible seed spread
        hparams={"learning_rate": 1e-4, "batch_size": 16, "epochs": 2, "max_seq_length": 64},
        data={"max_train": 500, "max_eval": 872},
        pretrained=True,
        pretrain=DEMO_PRETRAIN,
        description="a real seed study in CPU minutes: MiniLM-L6 and its continued-pretraining seed families",
    ),
    # ~30 minutes on 2 cores: 3 pretraining seed families x 3 fine-tuning seeds, SST-2 and a pair task.
    "cpu": SweepSpec(
        name="cpu",
        tasks=("sst2", "mrpc"),
        models=("minilm", "minilm+mlm"),
        pretrain_seeds=(1, 2, 3),
        model_pretrain_seeds={"minilm": (0,)},
        finetune_seeds=(0, 1, 2),
        hparams={"learning_rate": 1e-4, "batch_size": 16, "epochs": 2, "max_seq_length": 64},
        data={"max_train": 500},  # the demo's budget (measured to learn); the full validation splits
        pretrained=True,
        pretrain=CPU_PRETRAIN,
        description="MiniLM-L6 vs 3 continued-pretraining families x 3 fine-tuning seeds on SST-2 and MRPC",
    ),
    # A GPU cluster: the MultiBERTs' 25 pretraining seeds from the hub (Sellam et al. 2022) beside MiniLM families.
    "paper": SweepSpec(
        name="paper",
        tasks=("sst2", "mrpc", "rte", "qnli"),
        models=("google/multiberts-seed_{seed}", "minilm+mlm"),
        pretrain_seeds=tuple(range(25)),
        model_pretrain_seeds={"minilm+mlm": tuple(range(10))},
        finetune_seeds=tuple(range(5)),
        hparams={"learning_rate": 2e-5, "batch_size": 32, "epochs": 3, "max_seq_length": 128},
        model_hparams={"minilm+mlm": {"learning_rate": 1e-4}},
        cpus_per_trial=2,
        pretrained=True,
        pretrain=PAPER_PRETRAIN,
        description="MultiBERTs seeds (hub) and MiniLM seed families, GLUE",
    ),
}

if __name__ == "__main__":
    sys.exit(sweep_main(PROFILES, default_experiment="seed_study"))
