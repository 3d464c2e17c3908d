"""Model resolution: (model, pretraining seed) -> a sequence-classification model and its tokenizer.

`model` is one of
- a BERT size name (tiny ... large, Turc et al.'s miniature shapes): the backbone comes from a seedlab-pretrained
  checkpoint when one exists for (size, pretraining seed) (`seedlab.store.checkpoints`), else it is randomly
  initialised from the pretraining seed;
- a named checkpoint (`seedlab.data.catalog.NAMED_CHECKPOINTS`, e.g. "minilm"): the published weights, read
  offline from the package that ships them (`seedlab.data.pretrained`), one pretraining seed;
- "<named checkpoint>+mlm" (e.g. "minilm+mlm"): a family of that checkpoint continued with masked-LM pretraining,
  one checkpoint per pretraining seed, made by the sweep's pretraining stage;
- a hub name (with an optional `{seed}` placeholder filled by the pretraining seed, e.g.
  `google/multiberts-seed_{seed}`) or a local path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seedlab.data.catalog import (BERT_SIZES, CONTINUED_MLM_SUFFIX, MAX_POSITIONS,  # noqa: F401 (re-exported)
                                   NAMED_CHECKPOINTS, continued_base)
from seedlab.errors import SeedlabError


def validate_model(model: str) -> None:
    """Raise a one-line error unless `model` is a size name, a named checkpoint (or its +mlm family), a hub-style
    name or an existing path. Cheap: nothing is loaded (`check_loadable` loads)."""
    if model in BERT_SIZES or model in NAMED_CHECKPOINTS or continued_base(model) or "/" in model or Path(model).exists():
        return
    named = ", ".join(f"{n}, {n}{CONTINUED_MLM_SUFFIX}" for n in NAMED_CHECKPOINTS)
    raise SeedlabError(f"unknown model {model!r} (valid: {', '.join(BERT_SIZES)}, {named}, a hub name like "
                       f"org/name, or a local path)")


def check_loadable(model: str, pretrain_seeds=(0,)) -> None:
    """Refuse, with one line and before any sweep launches, a model whose weights cannot be had: a named checkpoint
    whose package is missing (and no hub), a local path without safetensors weights, a hub name that is neither
    cached nor reachable. BERT sizes and +mlm families are made by seedlab and always pass."""
    validate_model(model)
    if model in BERT_SIZES:
        return
    base = continued_base(model) or (model if model in NAMED_CHECKPOINTS else None)
    if base is not None:
        from seedlab.data.pretrained import resolve_named_checkpoint

        resolve_named_checkpoint(base)  # extracted and verified once per node; raises its own one-line error
        return
    for seed in pretrain_seeds:
        name = model.format(seed=seed) if "{seed}" in model else model
        if Path(name).exists():
            if not (Path(name) / "config.json").is_file() or not any(Path(name).glob("*.safetensors*")):
                raise SeedlabError(f"cannot load model {name!r}: the folder needs config.json and safetensors "
                                   "weights (seedlab never loads pickled *.bin weights)")
            continue
        from seedlab.data.pretrained import hub_unusable

        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            continue  # in the local hub cache: loads offline
        reason = hub_unusable()
        if reason:
            raise SeedlabError(f"cannot load model {name!r}: it is not a local folder, not in the hub cache, and "
                               f"the hub cannot be used ({reason})")


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
    without one, a size's backbone is drawn at random from the pretraining seed. One model is built either way,
    and whatever the backbone's source, the same `init_seed` gives the same head: a loaded model's missing head
    and a random model's redrawn head are both `_init_weights` right after `torch.manual_seed(init_seed)`.
    Weights are read from safetensors only (no pickle is ever loaded).
    """
    import transformers
    from transformers import AutoTokenizer, BertForSequenceClassification

    validate_model(model)
    transformers.logging.set_verbosity_error()  # per-trial load reports (the unused MLM head) are noise
    transformers.utils.logging.disable_progress_bar()
    if model in BERT_SIZES and checkpoint is None:
        from seedlab.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer()
        torch.manual_seed(pretrain_seed)  # the pretraining seed alone decides the backbone (BertModel's own draws)
        classifier = BertForSequenceClassification(bert_config(model, tokenizer.vocab_size, num_labels))
        torch.manual_seed(init_seed)  # the head is redrawn from init_seed alone, as from_pretrained draws it
        classifier._init_weights(classifier.classifier)
        return ResolvedModel(classifier, tokenizer, "random")
    if model in BERT_SIZES or continued_base(model):
        if checkpoint is None:  # a +mlm family exists only as the checkpoints its pretraining stage made
            raise SeedlabError(f"model {model!r} needs its pretraining stage: a sweep with pretrained=True and "
                               f"pretrain={{{model!r}: {{...}}}}, or `seedlab pretrain`")
        name, source = str(checkpoint), f"checkpoint:{checkpoint}"
    elif model in NAMED_CHECKPOINTS:
        from seedlab.data.pretrained import resolve_named_checkpoint

        name, source = str(resolve_named_checkpoint(model)), f"named:{model}"
    else:
        name = model.format(seed=pretrain_seed) if "{seed}" in model else model
        source = f"hub:{name}"
    torch.manual_seed(init_seed)  # every weight but the new head comes from the file: the head is the only draw
    return ResolvedModel(load_classifier(name, num_labels), AutoTokenizer.from_pretrained(name), source)


def load_classifier(name: str, num_labels: int):
    """A sequence classifier from a hub name or directory, from its safetensors weights only."""
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_labels, use_safetensors=True)
    except OSError as exc:  # no model.safetensors (only pickled weights), or no such model
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SeedlabError(f"cannot load model {name!r}: {reason} (valid: a hub name or directory with "
                           f"safetensors weights; seedlab never loads pickled *.bin weights)") from exc
