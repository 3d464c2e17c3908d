"""Model resolution: (model, pretraining seed) -> a sequence-classification model and its tokenizer.

`model` is one of
- a BERT size name (tiny ... large, Turc et al.'s miniature shapes): the backbone comes from a seedlab-pretrained
  checkpoint when one exists for (size, pretraining seed) (`seedlab.store.checkpoints`), else it is randomly
  initialised from the pretraining seed;
- a named checkpoint (`seedlab.data.catalog.NAMED_CHECKPOINTS`, e.g. "minilm"): the published weights, read
  offline from the package that ships them (`seedlab.data.pretrained`), one pretraining seed;
- "<named checkpoint>+mlm" (e.g. "minilm+mlm"): a family of that checkpoint continued with masked-LM pretraining,
  one checkpoint per pretraining seed, made by the sweep's pretraining stage;
- a random decoder (`seedlab.data.catalog.RANDOM_DECODERS`, e.g. "tiny-llama"): a Llama-style decoder seedlab
  builds once from a fixed seed and saves as safetensors in its cache, then loads like a published checkpoint;
- a hub name (with an optional `{seed}` placeholder filled by the pretraining seed, e.g.
  `google/multiberts-seed_{seed}`) or a local path.

Everything but the BERT sizes goes through `AutoModelForSequenceClassification`, so any architecture with a
sequence-classification head loads: BERT, RoBERTa, DeBERTa-v2/v3, ELECTRA encoders; Llama, Qwen2/3, Mistral, Gemma,
Phi decoders. A decoder's tokenizer gets a pad token (its EOS when it has none) and the model's config the same
`pad_token_id`, which is how the classifier finds the last real token of each row on either padding side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seedlab.data.catalog import (BERT_SIZES, CONTINUED_MLM_SUFFIX, MAX_POSITIONS,  # noqa: F401 (re-exported)
                                   NAMED_CHECKPOINTS, RANDOM_DECODERS, continued_base)
from seedlab.errors import SeedlabError


def validate_model(model: str) -> None:
    """Raise a one-line error unless `model` is a size name, a named checkpoint (or its +mlm family), a hub-style
    name or an existing path. Cheap: nothing is loaded (`check_loadable` loads)."""
    if (model in BERT_SIZES or model in NAMED_CHECKPOINTS or model in RANDOM_DECODERS or continued_base(model)
            or "/" in model or Path(model).exists()):
        return
    named = ", ".join(f"{n}, {n}{CONTINUED_MLM_SUFFIX}" for n in NAMED_CHECKPOINTS)
    raise SeedlabError(f"unknown model {model!r} (valid: {', '.join(BERT_SIZES)}, {named}, "
                       f"{', '.join(RANDOM_DECODERS)}, a hub name like org/name, or a local path)")


def check_loadable(model: str, pretrain_seeds=(0,)) -> None:
    """Refuse, with one line and before any sweep launches, a model whose weights cannot be had: a named checkpoint
    whose package is missing (and no hub), a local path without safetensors weights, a hub name that is neither
    cached nor reachable. BERT sizes and +mlm families are made by seedlab and always pass."""
    validate_model(model)
    if model in BERT_SIZES or model in RANDOM_DECODERS:
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
    init_source: str  # "random" | "checkpoint:<where>" | "named:<name>" | "built:<name>" | "hub:<name>"
    # modules the checkpoint did not have (the new head, e.g. ("classifier",) or ("score",)): drawn from init_seed,
    # and trained in full under LoRA
    new_modules: tuple[str, ...] = ()


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
        return ResolvedModel(classifier, tokenizer, "random", ("classifier",))
    if model in BERT_SIZES or continued_base(model):
        if checkpoint is None:  # a +mlm family exists only as the checkpoints its pretraining stage made
            raise SeedlabError(f"model {model!r} needs its pretraining stage: a sweep with pretrained=True and "
                               f"pretrain={{{model!r}: {{...}}}}, or `seedlab pretrain`")
        name, source = str(checkpoint), f"checkpoint:{checkpoint}"
    elif model in NAMED_CHECKPOINTS:
        from seedlab.data.pretrained import resolve_named_checkpoint

        name, source = str(resolve_named_checkpoint(model)), f"named:{model}"
    elif model in RANDOM_DECODERS:
        name, source = str(random_decoder_dir(model)), f"built:{model}"
    else:
        name = model.format(seed=pretrain_seed) if "{seed}" in model else model
        source = f"hub:{name}"
    torch.manual_seed(init_seed)  # every weight but the new head comes from the file: the head is the only draw
    classifier, missing = load_classifier(name, num_labels)
    tokenizer = AutoTokenizer.from_pretrained(name)
    fit_pad_token(classifier, tokenizer)
    return ResolvedModel(classifier, tokenizer, source, new_modules(missing))


def load_classifier(name: str, num_labels: int):
    """(sequence classifier, the weight names its checkpoint lacked) from a hub name or directory, from its
    safetensors weights only."""
    from transformers import AutoModelForSequenceClassification

    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=num_labels, use_safetensors=True, output_loading_info=True)
        return model, sorted(info.get("missing_keys", ()))
    except OSError as exc:  # no model.safetensors (only pickled weights), or no such model
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SeedlabError(f"cannot load model {name!r}: {reason} (valid: a hub name or directory with "
                           f"safetensors weights; seedlab never loads pickled *.bin weights)") from exc


def new_modules(missing_keys) -> tuple[str, ...]:
    """The modules that own weights a checkpoint lacked ("classifier.weight" -> "classifier"), in order."""
    return tuple(dict.fromkeys(key.rsplit(".", 1)[0] for key in missing_keys if "." in key))


def is_decoder_only(config) -> bool:
    """A decoder-only language model (Llama, Qwen, Mistral, Gemma, Phi, ...): its architecture has no masked-LM
    form, which every encoder seedlab fine-tunes (BERT, RoBERTa, DeBERTa, ELECTRA) has."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.is_encoder_decoder


def fit_pad_token(model, tokenizer) -> None:
    """Give a decoder's tokenizer a pad token (its EOS when it has none) and the model's config its id.

    A decoder's classifier pools the rightmost token that is not `config.pad_token_id`, so that id must be the one
    batches are padded with; then the same token is pooled whatever the padding side. The KV cache is switched off:
    classification never generates, and the cache only costs memory (it cannot be used with gradient checkpointing).
    """
    if not is_decoder_only(model.config):
        return
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise SeedlabError(f"the tokenizer of {model.config.name_or_path!r} has neither a pad nor an EOS token "
                               "(valid: a tokenizer with either)")
        tokenizer.pad_token = tokenizer.eos_token
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.pad_token_id = tokenizer.pad_token_id
        config.use_cache = False


def model_inputs(model, tokenizer) -> tuple[str, ...]:
    """The batch fields to give `model`: input_ids and attention_mask, and token_type_ids only when both the model's
    forward takes them and the tokenizer makes them (Llama-style decoders take none; RoBERTa's tokenizer makes none).
    """
    import inspect

    accepted = inspect.signature(model.forward).parameters
    made = set(getattr(tokenizer, "model_input_names", ("input_ids", "token_type_ids", "attention_mask")))
    return ("input_ids", "attention_mask") + (("token_type_ids",) if "token_type_ids" in accepted and
                                              "token_type_ids" in made else ())


def random_decoder_dir(name: str) -> Path:
    """The folder of the random decoder `name` (`RANDOM_DECODERS`): built on first use, then reused.

    The weights are a pure function of the catalog entry (its shape and `build_seed`) and of seedlab's WordPiece
    vocabulary, so every node builds the same folder. Built in a temporary folder beside the target and renamed into
    place under a file lock (concurrent trials build once and never see half a folder). The folder name carries a
    hash of the entry, so a changed entry is a new folder, never a stale one.
    """
    import hashlib
    import json
    import shutil
    import tempfile
    from dataclasses import asdict

    from filelock import FileLock

    from seedlab.data.paths import cache_dir

    spec = RANDOM_DECODERS[name]
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:8]
    root = cache_dir() / "decoders"
    target = root / f"{name}-{digest}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_dir():
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
            try:
                _build_random_decoder(spec, staging)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_random_decoder(spec, folder: Path) -> None:
    """Save a causal LM of `spec`'s shape with weights drawn from `spec.build_seed`, and a Llama-like tokenizer over
    seedlab's WordPiece vocabulary: [CLS] as BOS, [SEP] as EOS, no pad token, no token_type_ids."""
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    from seedlab.data.tokenizer import load_tokenizer

    wordpiece = load_tokenizer()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece.backend_tokenizer, bos_token="[CLS]",
                                        eos_token="[SEP]", unk_token="[UNK]", model_max_length=MAX_POSITIONS,
                                        model_input_names=["input_ids", "attention_mask"])
    config = AutoConfig.for_model(spec.model_type, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=None, **spec.config_fields())
    torch.manual_seed(spec.build_seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
