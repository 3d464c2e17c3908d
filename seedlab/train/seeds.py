"""Seed derivation: one fine-tuning seed fans out into independent seeds for each source of randomness.

Zhong et al. and Dodge et al. seed the classifier-head initialisation and the data order separately;
dropout is a third stream. Each is derived by hashing, so changing one override never moves the others, and
each can be set explicitly (for N x N init/order grids).

Fine-tuning seeds are nested in pretraining seeds (the seed tree of METHODS.md section 3): fine-tuning seed f
of pretraining seed p is its own draw, not the same head and data order as f of another pretraining seed.
Zhong et al.'s noise decomposition assumes exactly that; with a crossed design (the same draws under every
pretraining seed) a shared fine-tuning effect cancels from the spread of the family means and PretVar comes
out biased low. Runs that differ only in model (same p and f) still share their draws, so model comparisons
stay paired.

LoRA adds a fourth stream, `lora_seed`: the random draws of the adapter's initialisation (peft's A matrices;
the B matrices start at zero). It is derived from the same pair (`pretrain_seed`, `finetune_seed`), so it is nested
like the others, and can be set explicitly. It exists only in LoRA cells, so the resolved cells of full
fine-tuning runs (and their trial keys) stay what they were.
"""

from __future__ import annotations

import hashlib

SEED_PURPOSES = ("init", "order", "dropout")
LORA_PURPOSE = "lora"


def derive_seed(base: int, purpose: str) -> int:
    """A 31-bit seed for `purpose`, a pure function of (base, purpose)."""
    digest = hashlib.sha256(f"seedlab:{int(base)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def trial_seeds(finetune_seed: int, *, pretrain_seed: int, init_seed=None, order_seed=None,
                dropout_seed=None) -> dict[str, int]:
    """{init_seed, order_seed, dropout_seed}: overrides where given, else derived from the pair
    (`pretrain_seed`, `finetune_seed`), so each pretraining seed's fine-tuning seeds are fresh draws."""
    given = {"init": init_seed, "order": order_seed, "dropout": dropout_seed}
    return {
        f"{purpose}_seed": int(given[purpose]) if given[purpose] is not None
        else derive_seed(finetune_seed, f"{purpose}/pretrain-{int(pretrain_seed)}")
        for purpose in SEED_PURPOSES
    }


def lora_seed(finetune_seed: int, *, pretrain_seed: int, override=None) -> int:
    """The seed of a LoRA adapter's initialisation: `override` where given, else derived from the pair
    (`pretrain_seed`, `finetune_seed`) like the streams of `trial_seeds`."""
    if override is not None:
        return int(override)
    return derive_seed(finetune_seed, f"{LORA_PURPOSE}/pretrain-{int(pretrain_seed)}")
