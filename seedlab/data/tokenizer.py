"""The shared offline tokenizer: a WordPiece vocabulary trained once on WikiText-2 and cached.

Training is deterministic (same corpus, same settings -> the same vocab file), so every node of a cluster
that trains its own copy gets an identical tokenizer; a file lock keeps concurrent trials on one node
from training it twice.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock

from seedlab.data.paths import cache_dir

VOCAB_SIZE = 8192
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tokenizer_dir(vocab_size: int = VOCAB_SIZE) -> Path:
    return cache_dir() / "tokenizers" / f"wikitext2-wordpiece-{vocab_size}"


def train_wordpiece(vocab_size: int = VOCAB_SIZE):
    """Train an uncased BERT WordPiece tokenizer on WikiText-2 train (a few seconds)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    from seedlab.data.corpus import wikitext_lines

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2)
    tok.train_from_iterator(wikitext_lines("train"), trainer=trainer)
    # The trainer breaks frequency ties in a thread-dependent order, so the same token set can get
    # different ids. WordPiece needs only the set: renumber it (specials first, then sorted) for
    # byte-identical tokenizers on every run and node.
    learned = sorted(set(tok.get_vocab()) - set(SPECIAL_TOKENS))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + learned)}
    tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


_LOADED: dict = {}  # vocab size -> the tokenizer this process loaded (a reused trial worker loads it once)


def load_tokenizer(vocab_size: int = VOCAB_SIZE):
    """The cached `BertTokenizerFast`, training and saving it on first use; loaded once per process."""
    if vocab_size in _LOADED:
        return _LOADED[vocab_size]
    from transformers import BertTokenizerFast

    path = tokenizer_dir(vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not (path / "tokenizer.json").exists():
            fast = BertTokenizerFast(tokenizer_object=train_wordpiece(vocab_size), model_max_length=512)
            tmp = path.with_name(path.name + ".tmp")
            fast.save_pretrained(tmp)
            tmp.rename(path)  # atomic: a half-written tokenizer is never visible
    _LOADED[vocab_size] = BertTokenizerFast.from_pretrained(path)
    return _LOADED[vocab_size]
