"""Masked-LM pretraining from scratch: MultiBERTs-style seed families of every BERT size, offline.

- `config`: what one family's pretraining is (`PretrainConfig`, its `key()`, the family's derived seeds);
- `data`: WikiText-2 packed into [CLS] ... [SEP] blocks, BERT masking, the fixed held-out set, block order;
- `loop`: model initialisation, the MLM loss, evaluation, the schedule and `pretrain()` itself;
- `checkpoint`: `save_checkpoint`, a directory `seedlab.store.checkpoints` finds and `resolve_model` loads.

The Ray Tune stage that pretrains many families and logs them to MLflow is `seedlab.run.pretrain_stage`;
`seedlab pretrain` (`seedlab.cli_pretrain`) runs it, and `seedlab pretrain --evidence`
(`seedlab.run.pretrain_evidence`) shows that the pretraining is real (see docs/pretraining.md).
"""

from seedlab.train.pretrain.checkpoint import save_checkpoint
from seedlab.train.pretrain.config import (PRETRAIN_SEED_PURPOSES, SCHEDULES, PretrainConfig, pretrain_config,
                                           pretrain_seeds, stage_configs)
from seedlab.train.pretrain.data import (EVAL_BLOCKS_SEED, EVAL_MASK_SEED, block_order, eval_set, load_blocks,
                                         mask_tokens, pack_blocks)
from seedlab.train.pretrain.loop import (PretrainResult, configure_optimizer, evaluate_mlm, init_mlm_model, lr_factor,
                                         mlm_loss, pretrain)

__all__ = [
    "EVAL_BLOCKS_SEED", "EVAL_MASK_SEED", "PRETRAIN_SEED_PURPOSES", "SCHEDULES", "PretrainConfig", "PretrainResult",
    "block_order", "configure_optimizer", "eval_set", "evaluate_mlm", "init_mlm_model", "load_blocks", "lr_factor",
    "mask_tokens", "mlm_loss", "pack_blocks", "pretrain", "pretrain_config", "pretrain_seeds", "save_checkpoint",
    "stage_configs",
]
