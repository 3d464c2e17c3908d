"""The pretraining text corpus: WikiText-2 from the local data dir, else from the hub."""

from __future__ import annotations

import re
from collections.abc import Iterator

from seedlab.errors import SeedlabError
from seedlab.data.paths import local_data_dir

WIKITEXT_FILES = {
    "train": ["wiki.train.tokens.part1", "wiki.train.tokens.part2", "wiki.train.tokens.part3"],
    "validation": ["wiki.valid.tokens"],
    "test": ["wiki.test.tokens"],
}
# The tokenized WikiText variant splits numbers and hyphens (" @-@ "); undo that so text looks natural.
_DETOKENIZE = [(re.compile(r" @(.)@ "), r"\1"), (re.compile(r"<unk>"), "[UNK]")]


def _clean(line: str) -> str:
    for pattern, repl in _DETOKENIZE:
        line = pattern.sub(repl, line)
    return line.strip()


def wikitext_lines(split: str = "train") -> Iterator[str]:
    """Non-empty, non-heading lines of WikiText-2, in file order."""
    if split not in WIKITEXT_FILES:
        raise SeedlabError(f"unknown corpus split {split!r} (valid: {', '.join(WIKITEXT_FILES)})")
    data_dir = local_data_dir()
    folder = data_dir / "corpus" / "wikitext-2" if data_dir else None
    if folder is not None and folder.is_dir():
        for name in WIKITEXT_FILES[split]:
            with open(folder / name, encoding="utf-8") as handle:
                for raw in handle:
                    line = _clean(raw)
                    if line and not line.startswith("="):
                        yield line
        return
    import datasets  # users with internet: the same corpus from the hub

    hub_split = {"train": "train", "validation": "validation", "test": "test"}[split]
    for row in datasets.load_dataset("Salesforce/wikitext", "wikitext-2-v1", split=hub_split):
        line = _clean(row["text"])
        if line and not line.startswith("="):
            yield line
