"""Writing a pretrained family member to disk as a checkpoint `seedlab.store.checkpoints` can find and load."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seedlab.train.pretrain.loop import PretrainResult


def save_checkpoint(result: PretrainResult, directory: Path) -> Path:
    """Write a loadable checkpoint (safetensors, config.json, tokenizer, seedlab-pretrain.json) atomically."""
    from seedlab.store.checkpoints import RECORD_FILE

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        result.model.save_pretrained(staging, safe_serialization=True)
        result.tokenizer.save_pretrained(staging)
        record = {"key": result.config.key(), "config": result.config.as_params(), "before": result.before,
                  "after": result.after, "steps": result.config.max_steps, "train_seconds": result.train_seconds,
                  "device": result.device, "pooler": "not trained by MLM: as drawn from the pretraining seed"}
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
