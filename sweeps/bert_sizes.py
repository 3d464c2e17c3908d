"""Zhong et al. (2021): BERT sizes x pretraining seeds x fine-tuning seeds, instance by instance.

    python sweeps/bert_sizes.py --profile smoke               # one machine, a few minutes on CPU
    ray job submit --working-dir . -- python sweeps/bert_sizes.py --profile paper   # a GPU cluster

This file only declares what to run; seedlab does the rest.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seedlab.sweep import SweepSpec, sweep_main  # noqa: E402

PROFILES = {
    # CPU, minutes: 2 sizes x 2 pretraining seeds x 2 fine-tuning seeds on a subsample of SST-2.
    "smoke": SweepSpec(
        name="smoke",
        tasks=("sst2",),
        models=("tiny", "mini"),
        pretrain_seeds=(0, 1),
        finetune_seeds=(0, 1),
        hparams={"learning_rate": 3e-4, "batch_size": 32, "epochs": 2, "max_seq_length": 64},
        data={"max_train": 1000, "max_eval": 872},
        description="end-to-end check on CPU",
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
        description="Zhong et al. 2021 design",
    ),
}

if __name__ == "__main__":
    sys.exit(sweep_main(PROFILES, default_experiment="bert_sizes"))
