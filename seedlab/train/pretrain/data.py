"""The pretraining data: WikiText-2 packed into full blocks, BERT masking, the fixed held-out set, block order.

Blocks are `[CLS] + (max_seq_length - 2) tokens + [SEP]` cut from the concatenated, tokenized lines (no
padding, no next-sentence task). Masking is BERT's: 15% of the non-special tokens are chosen; of those 80% ->
[MASK], 10% -> a random non-special token, 10% unchanged.
"""

from __future__ import annotations

import functools
from itertools import islice

import torch

from seedlab.train.seeds import derive_seed

# The validation subset and its masking are fixed: equal for every seed and size, before and after pretraining.
EVAL_BLOCKS_SEED = derive_seed(0, "pretrain_eval_blocks")
EVAL_MASK_SEED = derive_seed(0, "pretrain_eval_mask")


def pack_blocks(lines, tokenizer, max_seq_length: int) -> torch.Tensor:
    """Concatenate the tokenized lines and cut them into [CLS] ... [SEP] blocks: a (blocks, length) tensor."""
    ids = tokenizer(list(lines), add_special_tokens=False, verbose=False)["input_ids"]
    stream = torch.tensor([t for line in ids for t in line], dtype=torch.long)
    body = max_seq_length - 2
    blocks = stream[: len(stream) // body * body].view(-1, body)
    cls = torch.full((len(blocks), 1), tokenizer.cls_token_id, dtype=torch.long)
    sep = torch.full((len(blocks), 1), tokenizer.sep_token_id, dtype=torch.long)
    return torch.cat([cls, blocks, sep], dim=1)


def load_blocks(split: str, tokenizer, max_seq_length: int, max_lines: int | None = None) -> torch.Tensor:
    """The blocks of a WikiText-2 split (`max_lines`: only its first N lines)."""
    from seedlab.data.corpus import wikitext_lines

    return pack_blocks(islice(wikitext_lines(split), max_lines), tokenizer, max_seq_length)


def mask_tokens(ids: torch.Tensor, tokenizer, generator: torch.Generator, probability: float = 0.15):
    """BERT masking of a (batch, length) tensor: (inputs, labels), labels -100 where nothing is predicted."""
    special, replacements = _token_sets(tokenizer.vocab_size, tuple(sorted(tokenizer.all_special_ids)))
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & ~torch.isin(ids, special)
    action = torch.rand(ids.shape, generator=generator)  # < 0.8: [MASK]; < 0.9: random token; else unchanged
    random_tokens = replacements[torch.randint(len(replacements), ids.shape, generator=generator)]
    inputs = torch.where(chosen & (action < 0.8), tokenizer.mask_token_id, ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_tokens, inputs)
    labels = torch.where(chosen, ids, -100)
    return inputs, labels


@functools.lru_cache(maxsize=8)
def _token_sets(vocab_size: int, special_ids: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(special ids, the ids a random replacement draws from: every non-special token)."""
    return torch.tensor(special_ids), torch.tensor([i for i in range(vocab_size) if i not in special_ids])


def eval_set(tokenizer, max_seq_length: int, num_blocks: int):
    """The fixed held-out set: a seeded subset of validation blocks, masked with a fixed seed."""
    blocks = load_blocks("validation", tokenizer, max_seq_length)
    chosen = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(EVAL_BLOCKS_SEED))[:num_blocks]
    return mask_tokens(blocks[chosen.sort().values], tokenizer, torch.Generator().manual_seed(EVAL_MASK_SEED))


def block_order(num_blocks: int, batch_size: int, generator: torch.Generator):
    """Endless batches of block indices: a fresh permutation every epoch."""
    while True:
        permutation = torch.randperm(num_blocks, generator=generator)
        for first in range(0, num_blocks, batch_size):
            yield permutation[first : first + batch_size]
