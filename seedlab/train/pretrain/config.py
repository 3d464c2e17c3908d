"""What one seed family's pretraining is: its `PretrainConfig`, the config's key, and the family's seeds.

Plain data and hashing: a sweep declaration validates its pretraining settings and ties its trials to their
family's key (`pretrain_config(...).key()`) without building a model or reading data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from seedlab.data.catalog import BERT_SIZES, continued_base
from seedlab.errors import SeedlabError
from seedlab.train.seeds import derive_seed

PRETRAIN_SEED_PURPOSES = ("pretrain_head", "pretrain_order", "pretrain_mask", "pretrain_dropout")
SCHEDULES = ("linear", "cosine")
# Bump when a change alters what pretraining computes from the same config, so that a checkpoint made by
# earlier code is not taken for one of the new code (as seedlab.store.contract.COMPUTE_VERSION for trials).
# 2: AdamW's fused kernel (seedlab.train.finetune.adamw).
PRETRAIN_COMPUTE_VERSION = 2


@dataclass(frozen=True)
class PretrainConfig:
    # A BERT size pretrained from scratch, or "<named checkpoint>+mlm": that published checkpoint's masked-LM
    # pretraining continued on WikiText-2 (seedlab.data.catalog.continued_base).
    size: str
    pretrain_seed: int
    max_steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.06
    max_seq_length: int = 128
    weight_decay: float = 0.01
    max_train_lines: int | None = None  # first N lines of WikiText-2 train (None: all 17.5k, ~2.4M tokens)
    mlm_probability: float = 0.15
    schedule: str = "linear"  # linear warm-up, then linear or cosine decay to 0
    grad_clip: float = 1.0
    eval_blocks: int = 512  # validation blocks in the fixed held-out subset
    log_every: int = 10

    def validate(self) -> None:
        if self.size not in BERT_SIZES and continued_base(self.size) is None:
            from seedlab.data.catalog import CONTINUED_MLM_SUFFIX, NAMED_CHECKPOINTS

            continued = ", ".join(f"{n}{CONTINUED_MLM_SUFFIX}" for n in NAMED_CHECKPOINTS)
            raise SeedlabError(f"cannot pretrain {self.size!r} (valid: a BERT size {', '.join(BERT_SIZES)}, "
                               f"or a continued named checkpoint {continued})")
        if not isinstance(self.pretrain_seed, int) or isinstance(self.pretrain_seed, bool) or self.pretrain_seed < 0:
            raise SeedlabError(f"invalid pretraining seed {self.pretrain_seed!r} (valid: non-negative integers)")
        if self.schedule not in SCHEDULES:
            raise SeedlabError(f"unknown schedule {self.schedule!r} (valid: {', '.join(SCHEDULES)})")
        if not 8 <= self.max_seq_length <= 512:
            raise SeedlabError(f"invalid max_seq_length {self.max_seq_length} (valid: 8-512)")
        if min(self.max_steps, self.batch_size, self.eval_blocks, self.log_every) < 1 or self.learning_rate <= 0:
            raise SeedlabError("max_steps, batch_size, eval_blocks, log_every and learning_rate must be positive")
        if not 0 <= self.warmup_ratio < 1 or not 0 < self.mlm_probability < 1:
            raise SeedlabError("warmup_ratio must be in [0, 1) and mlm_probability in (0, 1)")

    def as_params(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """A deterministic id of the pretraining this config describes: equal configs, equal keys. The compute
        version (PRETRAIN_COMPUTE_VERSION) enters from version 2 on, so earlier checkpoints keep their keys."""
        params = self.as_params()
        if PRETRAIN_COMPUTE_VERSION > 1:
            params["compute_version"] = PRETRAIN_COMPUTE_VERSION
        canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def pretrain_seeds(pretrain_seed: int) -> dict[str, int]:
    """{head_seed, order_seed, mask_seed, dropout_seed}, each derived from the pretraining seed."""
    return {f"{p.removeprefix('pretrain_')}_seed": derive_seed(pretrain_seed, p) for p in PRETRAIN_SEED_PURPOSES}


def pretrain_config(size: str, pretrain_seed: int, config_by_size: dict) -> PretrainConfig:
    """The validated PretrainConfig of one family; `config_by_size`: {"*": fields for all sizes, size: fields}."""
    valid = {f.name for f in fields(PretrainConfig)} - {"size", "pretrain_seed"}
    overrides = {**config_by_size.get("*", {}), **config_by_size.get(size, {})}
    unknown = set(overrides) - valid
    if unknown:
        raise SeedlabError(f"unknown pretraining setting(s) {sorted(unknown)} (valid: {', '.join(sorted(valid))})")
    config = PretrainConfig(size=size, pretrain_seed=pretrain_seed, **overrides)
    config.validate()
    return config


def stage_configs(families, *, config_by_size: dict) -> list[PretrainConfig]:
    """The PretrainConfig of every (size, pretraining seed) family in `families`."""
    return [pretrain_config(size, seed, config_by_size) for size, seed in families]
