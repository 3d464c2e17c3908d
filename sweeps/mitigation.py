"""Du & Nguyen (2023): are instability mitigation methods really more stable than standard fine-tuning?

    python sweeps/mitigation.py --profile smoke      # CPU, minutes
    python sweeps/mitigation.py --profile cpu        # the small study in docs/results/ (MiniLM-L6, SST-2, ~15 minutes on 2 cores)
    ray job submit --working-dir . -- python sweeps/mitigation.py --profile paper   # a GPU cluster

Each method (standard, Mixout p=0.1, layer-wise LR decay 0.95, re-initialising the top 5 layers and the
pooler, weight decay toward the pretrained weights) runs with the same seeds, so `seedlab analyze` compares
them on equal seed counts and ranks them under each instability measure.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seedlab.train.mitigation import METHODS  # noqa: E402

SMOKE_PRETRAIN = {"*": {"max_seq_length": 64, "batch_size": 32, "max_train_lines": 4000, "eval_blocks": 128},
                  "tiny": {"max_steps": 150, "learning_rate": 2e-3}}
from seedlab.run.sweep import SweepSpec, sweep_main  # noqa: E402

PROFILES = {
    "smoke": SweepSpec(
        name="smoke", tasks=("rte",), models=("tiny",), methods=METHODS, pretrain_seeds=(0,), finetune_seeds=(0, 1, 2),
        hparams={"learning_rate": 1e-3, "batch_size": 16, "epochs": 2, "max_seq_length": 64},
        data={"max_train": 400, "max_eval": 277}, pretrained=True, pretrain=SMOKE_PRETRAIN,
        description="every method on a few seeds, CPU minutes",
    ),
    # docs/results/mitigation_cpu.md: the packaged MiniLM-L6 (a real pretrained checkpoint, 6 layers), which
    # learns SST-2 in CPU minutes. `reinit` re-draws the top 5 of its 6 layers (the paper's setting was
    # made for 24-layer BERT-large), so it is the strongest intervention here, not a mild one.
    "cpu": SweepSpec(
        name="cpu", tasks=("sst2",), models=("minilm",), methods=METHODS, pretrain_seeds=(0,),
        finetune_seeds=tuple(range(5)),
        hparams={"learning_rate": 1e-4, "batch_size": 16, "epochs": 2, "max_seq_length": 64},
        data={"max_train": 500}, description="a small study of our own on 2 CPU cores, MiniLM-L6",
    ),
    # The paper's design: BERT-large, RTE / MRPC / CoLA, 10 seeds per method (their standard runs had 20),
    # lr 2e-5, batch 16, 10% warm-up, weight decay 0.01, max length 128.
    "paper": SweepSpec(
        name="paper", tasks=("rte", "mrpc", "cola"), models=("large",), methods=METHODS, pretrain_seeds=(0,),
        finetune_seeds=tuple(range(10)),
        hparams={"learning_rate": 2e-5, "batch_size": 16, "epochs": 3, "warmup_ratio": 0.1, "weight_decay": 0.01,
                 "max_seq_length": 128},
        cpus_per_trial=2, pretrained=True, log_representations=True,
        pretrain={"*": {"max_seq_length": 128, "batch_size": 128}, "large": {"max_steps": 10000, "learning_rate": 1e-4}},
        description="Du & Nguyen 2023 design",
    ),
}

if __name__ == "__main__":
    sys.exit(sweep_main(PROFILES, default_experiment="mitigation"))
