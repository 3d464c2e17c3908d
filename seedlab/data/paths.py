"""Where seedlab reads data and writes caches and stores.

Data is read in place, never copied into the project: `$SEEDLAB_DATA`, then `../shared/data` beside the
project checkout, then (with neither) the Hugging Face hub.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def local_data_dir() -> Path | None:
    """The offline data directory, or None when only the hub is available."""
    env = os.environ.get("SEEDLAB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    # Walk up from the package (and the cwd, for `ray job submit` copies) looking for ../shared/data.
    for start in (PROJECT_ROOT, Path.cwd()):
        for directory in (start, *start.parents):
            candidate = directory / "shared" / "data"
            if candidate.is_dir():
                return candidate
    return None


def cache_dir() -> Path:
    """Derived artefacts (trained tokenizer, downloaded checkpoints): `$SEEDLAB_CACHE` or ~/.cache/seedlab."""
    path = Path(os.environ.get("SEEDLAB_CACHE", Path.home() / ".cache" / "seedlab")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_store_dir() -> Path:
    """The embedded default MLflow store: ./mlruns in the current directory (`$SEEDLAB_STORE` overrides)."""
    return Path(os.environ.get("SEEDLAB_STORE", Path.cwd() / "mlruns")).expanduser().resolve()


def default_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI` if set, else the SQLite database of the default local store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{default_store_dir() / 'mlflow.db'}"
