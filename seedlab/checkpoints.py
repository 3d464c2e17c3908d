"""Where pretrained seed families live: (size, pretraining seed) -> a local checkpoint directory.

The seam for seedlab's own masked-LM pretraining: until a family has been pretrained, this finds nothing
and `seedlab.models` falls back to a random backbone drawn from the pretraining seed.
"""

from __future__ import annotations

import os
from pathlib import Path

from seedlab.paths import cache_dir


def checkpoint_dir(size: str, pretrain_seed: int) -> Path:
    root = Path(os.environ.get("SEEDLAB_CHECKPOINTS", cache_dir() / "checkpoints"))
    return root / f"bert-{size}" / f"seed_{pretrain_seed}"


def find_checkpoint(size: str, pretrain_seed: int) -> Path | None:
    path = checkpoint_dir(size, pretrain_seed)
    return path if (path / "config.json").exists() else None
