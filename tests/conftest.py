"""Shared test set-up: real data from ../shared/data, a private cache and store per session."""

import os

import pytest

from seedlab.data.paths import local_data_dir

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # tests never reach for the hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def pytest_collection_modifyitems(config, items):
    if local_data_dir() is None:
        skip = pytest.mark.skip(reason="needs the offline data dir (../shared/data or $SEEDLAB_DATA)")
        for item in items:
            if "needs_data" in item.keywords:
                item.add_marker(skip)
