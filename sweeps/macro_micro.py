"""The macro/micro seed study of large models (Bui/Zhou, Savova & Wang, IJCNLP-AACL 2025, arXiv 2503.07329):
RoBERTa-large fine-tuned in full and Llama-3.2-3B fine-tuned with LoRA, GLUE and SuperGLUE, 10 fine-tuning seeds.

    python sweeps/macro_micro.py --profile cpu      # CPU minutes: LoRA on MiniLM-L6 and on a tiny random decoder
    ray job submit --working-dir . -- python sweeps/macro_micro.py --profile paper   # a GPU cluster, hub checkpoints
    seedlab analyze --experiment macro_micro-cpu

Each LoRA trial's adapter initialisation has its own seed stream (`lora_seed`, derived from the pretraining and
fine-tuning seeds like the head-init, data-order and dropout seeds), so adapter-init noise can be told from the
others. What LoRA, the decoder path and the large-model settings do: docs/lora.md.

This file only declares what to run; seedlab does the rest.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seedlab.data.tasks import TASKS  # noqa: E402
from seedlab.run.sweep import SweepSpec, sweep_main  # noqa: E402

ROBERTA, LLAMA = "FacebookAI/roberta-large", "meta-llama/Llama-3.2-3B"

# GPU fractions: UNMEASURED. No GPU has run these two models in seedlab yet; 0.25 and 0.5 are rough guesses from
# the models' published sizes (a 3B forward/backward keeps more of a GPU busy than a 355M one), not measurements.
# Before a real run, measure with benchmarks/bench_lora_gpu.py (1, 2, 4, 8 trials per GPU, the paper's settings)
# and set these from its suggested fractions; every GPU trial also logs its `peak_gpu_memory_mib`.
PAPER_GPU_FRACTION = {ROBERTA: 0.25, LLAMA: 0.5}

PROFILES = {
    # A GPU cluster with hub access: the paper's two models, every GLUE and SuperGLUE task seedlab has.
    "paper": SweepSpec(
        name="paper",
        tasks=tuple(TASKS),
        models=(ROBERTA, LLAMA),
        pretrain_seeds=(0,),  # one published checkpoint each
        finetune_seeds=tuple(range(10)),
        # common settings for the two (the paper's own are not confirmed): RoBERTa-large 2e-5, LoRA 2e-4
        hparams={"learning_rate": 2e-5, "batch_size": 16, "epochs": 3, "max_seq_length": 128},
        model_hparams={LLAMA: {"learning_rate": 2e-4}},
        model_peft={LLAMA: {"r": 16, "alpha": 32, "dropout": 0.05}},  # q_proj, v_proj: peft's Llama default
        model_training={LLAMA: {"torch_dtype": "bfloat16", "gradient_checkpointing": True}},
        cpus_per_trial=2,
        gpu_fraction=PAPER_GPU_FRACTION,
        description="RoBERTa-large full fine-tuning and Llama-3.2-3B LoRA, GLUE and SuperGLUE, 10 seeds",
    ),
    # CPU minutes, and it learns: LoRA on the packaged MiniLM-L6 (a real checkpoint) on SST-2, and the decoder path
    # on a tiny Llama-style decoder with random weights (its accuracy is not the point: it exercises pad tokens,
    # last-token pooling, inputs without token_type_ids and LoRA on q_proj/v_proj).
    "cpu": SweepSpec(
        name="cpu",
        tasks=("sst2",),
        models=("minilm", "tiny-llama"),
        pretrain_seeds=(0,),
        finetune_seeds=(0, 1, 2),
        # 500 SST-2 examples x 2 epochs at 2e-3 (LoRA needs a learning rate ~10x full fine-tuning's 1e-4 at this
        # budget); what it measured: benchmarks/RESULTS.md, "LoRA on CPU"
        hparams={"learning_rate": 2e-3, "batch_size": 16, "epochs": 2, "max_seq_length": 64},
        data={"max_train": 500, "max_eval": 872},
        model_peft={"minilm": "lora", "tiny-llama": "lora"},
        description="LoRA on MiniLM-L6 and on a tiny random decoder, SST-2, 3 seeds",
    ),
}

if __name__ == "__main__":
    sys.exit(sweep_main(PROFILES, default_experiment="macro_micro"))
