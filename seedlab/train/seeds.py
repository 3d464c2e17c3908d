"""Seed derivation: one fine-tuning seed fans out into independent seeds for each source of randomness.

Zhong et al. and Dodge et al. seed the classifier-head initialisation and the data order separately;
dropout is a third stream. Each is derived from `finetune_seed` by hashing, so changing one override
never moves the others, and each can be set explicitly (for N x N init/order grids).

LoRA adds a fourth stream, `lora_seed`: the random draws of the adapter's initialisation (peft's A matrices;
the B matrices start at zero). It exists only in LoRA cells, so it is derived apart from the three above and
the resolved cells of full fine-tuning runs (and their trial keys) stay what they were.
"""

from __future__ import annotations

import hashlib

SEED_PURPOSES = ("init", "order", "dropout")
LORA_PURPOSE = "lora"


def derive_seed(base: int, purpose: str) -> int:
    """A 31-bit seed for `purpose`, a pure function of (base, purpose)."""
    digest = hashlib.sha256(f"seedlab:{int(base)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def trial_seeds(finetune_seed: int, init_seed=None, order_seed=None, dropout_seed=None) -> dict[str, int]:
    """{init_seed, order_seed, dropout_seed}: overrides where given, else derived from `finetune_seed`."""
    given = {"init": init_seed, "order": order_seed, "dropout": dropout_seed}
    return {
        f"{purpose}_seed": int(given[purpose]) if given[purpose] is not None else derive_seed(finetune_seed, purpose)
        for purpose in SEED_PURPOSES
    }


def lora_seed(finetune_seed: int, override=None) -> int:
    """The seed of a LoRA adapter's initialisation: `override` where given, else derived from `finetune_seed`."""
    return int(override) if override is not None else derive_seed(finetune_seed, LORA_PURPOSE)
