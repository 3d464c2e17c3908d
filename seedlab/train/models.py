"""Model resolution: (model, pretraining seed) -> a sequence-classification model and its tokenizer.

`model` is a BERT size name (tiny ... large, Turc et al.'s miniature shapes), a hub name (with an optional
`{seed}` placeholder filled by the pretraining seed, e.g. `google/multiberts-seed_{seed}`) or a local path.
For size names the backbone comes from a seedlab-pretrained checkpoint when one exists for
(size, pretraining seed) (`seedlab.store.checkpoints`), else it is randomly initialised from the pretraining seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seedlab.data.catalog import BERT_SIZES, MAX_POSITIONS  # noqa: F401 (re-exported: the sizes built here)
from seedlab.errors import SeedlabError


def validate_model(model: str) -> None:
    """Raise a one-line error unless `model` is a size name, a hub-style name or an existing path."""
    if model in BERT_SIZES or "/" in model or Path(model).exists():
        return
    raise SeedlabError(
        f"unknown model {model!r} (valid: {', '.join(BERT_SIZES)}, a hub name like org/name, or a local path)"
    )


def bert_config(size: str, vocab_size: int, num_labels: int = 2):
    from transformers import BertConfig

    validate_model(size)
    layers, hidden = BERT_SIZES[size]
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=MAX_POSITIONS,
        num_labels=num_labels,
    )


@dataclass
class ResolvedModel:
    model: torch.nn.Module
    tokenizer: object
    init_source: str  # "random" | "checkpoint:<where>" | "hub:<name>"


def resolve_model(
    model: str, pretrain_seed: int, num_labels: int, init_seed: int, checkpoint: Path | None = None
) -> ResolvedModel:
    """Build the classifier for (model, pretrain_seed); the new head is initialised from `init_seed` only.

    `checkpoint`: a pretrained backbone for this (size, pretraining seed) (see `seedlab.store.checkpoints`);
    without one, a size's backbone is drawn at random from the pretraining seed.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

    validate_model(model)
    import transformers

    transformers.logging.set_verbosity_error()  # per-trial load reports (the unused MLM head) are noise
    transformers.utils.logging.disable_progress_bar()
    if model not in BERT_SIZES:
        name = model.format(seed=pretrain_seed) if "{seed}" in model else model
        torch.manual_seed(init_seed)  # the hub checkpoint has no head: its init draws from this stream
        classifier = AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_labels)
        return ResolvedModel(classifier, AutoTokenizer.from_pretrained(name), f"hub:{name}")

    from seedlab.data.tokenizer import load_tokenizer

    if checkpoint is not None:
        from transformers import AutoTokenizer as _Tok, BertModel

        backbone = BertModel.from_pretrained(checkpoint, add_pooling_layer=True, use_safetensors=True)
        tokenizer = _Tok.from_pretrained(checkpoint)
        source = f"checkpoint:{checkpoint}"
    else:
        from transformers import BertModel

        tokenizer = load_tokenizer()
        torch.manual_seed(pretrain_seed)  # the pretraining seed alone decides the backbone
        backbone = BertModel(bert_config(model, tokenizer.vocab_size, num_labels))
        source = "random"
    config = backbone.config
    config.num_labels = num_labels
    torch.manual_seed(init_seed)  # the classifier head is the only part left with these draws
    classifier = BertForSequenceClassification(config)
    classifier.bert.load_state_dict(backbone.state_dict())
    return ResolvedModel(classifier, tokenizer, source)
