"""Shared test set-up: real data from ../shared/data, a private cache and store per session.

A test that reads the data dir says so with `@pytest.mark.needs_data(path, ...)`, naming what it reads
relative to that dir (``"glue/RTE"``; ``"corpus/wikitext-2"`` for anything that builds the WordPiece
tokenizer, which a fresh checkout trains from the corpus). Without the data dir, or with a data dir that
lacks one of the paths (an empty ``$SEEDLAB_DATA``), the test is skipped with the reason instead of erroring.
"""

import os

import pytest

from seedlab.data.paths import local_data_dir

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # tests never reach for the hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

TOKENIZER_CORPUS = "corpus/wikitext-2"  # what `seedlab.data.tokenizer.load_tokenizer` trains on


def missing_data(paths, data_dir) -> str | None:
    """Why a test that reads `paths` (relative to `data_dir`) cannot run, or None when it can."""
    if data_dir is None:
        return "needs the offline data dir (../shared/data or $SEEDLAB_DATA)"
    lacking = [p for p in paths if not (data_dir / p).exists()]
    if lacking:
        return f"needs {', '.join(lacking)} in the data dir {data_dir}"
    return None


@pytest.hookimpl(trylast=True)  # after the folders' own hooks (tests/browser) have added their marks
def pytest_collection_modifyitems(config, items):
    data_dir = local_data_dir()
    for item in items:
        marks = list(item.iter_markers("needs_data"))
        reason = marks and missing_data([p for mark in marks for p in mark.args], data_dir)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
