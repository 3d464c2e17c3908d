"""The model catalog: which model names seedlab knows and how they are shaped. No torch, so the analysis side
(sorting and labelling models in tables and figures) can read it without loading the training side.

`seedlab.train.models` builds the models named here.
"""

from __future__ import annotations

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
