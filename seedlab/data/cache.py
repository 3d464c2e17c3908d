"""Work done once per node, not once per trial: derived data cached in the process and on disk.

An entry is a set of named numpy arrays (or one pyarrow table) computed from inputs that `cache_key` turns
into a key. `cached_arrays` / `cached_table` return the entry from the process's memo, else from
`<cache_dir>/<namespace>/<key>/`, else compute it, write it and remember it.

- Safe formats only: arrays are `.npy` files read with `allow_pickle=False` (strings as fixed-width unicode),
  tables are parquet. Nothing read from the cache can run code.
- Atomic: an entry is written into a temporary directory beside its final place and renamed into it, so a
  half-written entry is never visible; a file lock per key makes concurrent trials on a node compute it once.
- Immutable: arrays handed out are read-only, so one trial cannot change what the next one reads.
- Bounded: the memo keeps the most recently used entries up to `$SEEDLAB_MEMO_MB` (default 1024) MiB.

A key must name everything the entry depends on (inputs, their versions, the code's format version):
the cache never checks an entry against its inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from seedlab.data.paths import cache_dir

FORMAT_VERSION = 1  # of the on-disk layout below; part of every key
_COMPLETE = "entry.json"  # written last: an entry directory without it is ignored


def cache_key(*parts) -> str:
    """A stable key of JSON-serialisable `parts` (dicts in any key order give the same key)."""
    text = json.dumps([FORMAT_VERSION, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class _Memo:
    """The process's most recently used entries, up to a byte budget."""

    def __init__(self):
        self.entries: OrderedDict = OrderedDict()
        self.sizes: dict = {}
        self.hits = self.misses = 0

    @staticmethod
    def budget() -> int:
        return int(float(os.environ.get("SEEDLAB_MEMO_MB", 1024)) * 2**20)

    def get(self, key):
        if key in self.entries:
            self.entries.move_to_end(key)
            self.hits += 1
            return self.entries[key]
        self.misses += 1
        return None

    def put(self, key, value, size: int) -> None:
        self.entries[key], self.sizes[key] = value, size
        self.entries.move_to_end(key)
        while len(self.entries) > 1 and sum(self.sizes.values()) > self.budget():
            oldest, _ = self.entries.popitem(last=False)
            del self.sizes[oldest]

    def clear(self) -> None:
        self.entries.clear()
        self.sizes.clear()


MEMO = _Memo()


def entry_dir(namespace: str, key: str) -> Path:
    return cache_dir() / namespace / key


def cached_arrays(namespace: str, key: str, compute: Callable[[], dict]) -> dict[str, np.ndarray]:
    """{name: read-only array}: the entry `key` of `namespace`, computed by `compute()` the first time on
    this node. `compute` returns {name: array-like}; object arrays (which would need pickle) are refused."""

    def write(directory: Path, arrays: dict) -> dict:
        out = {}
        for name, value in arrays.items():
            array = np.asarray(value)
            if array.dtype == object:
                raise TypeError(f"cache entry {namespace}/{key}: {name!r} is an object array (not storable "
                                "without pickle); give strings as a unicode array")
            np.save(directory / f"{name}.npy", array, allow_pickle=False)
            out[name] = array
        return out

    def read(directory: Path, names: list[str]) -> dict:
        return {name: np.load(directory / f"{name}.npy", allow_pickle=False) for name in names}

    found = _cached(namespace, key, compute, write, read)
    for array in found.values():
        array.setflags(write=False)
    return dict(found)  # the caller's own dict of the shared, read-only arrays


def cached_table(namespace: str, key: str, compute: Callable[[], object], *, disk: bool = True):
    """The pyarrow table of entry `key` of `namespace` (parquet on disk), computed by `compute()` once per node
    (`disk=False`: once per process, for inputs whose key cannot tell their versions apart)."""
    import pyarrow.parquet as pq

    def write(directory: Path, table) -> object:
        pq.write_table(table, directory / "table.parquet")
        return table

    def read(directory: Path, names) -> object:
        return pq.read_table(directory / "table.parquet")

    return _cached(namespace, key, compute, write, read, disk=disk)


def _cached(namespace: str, key: str, compute, write, read, disk: bool = True):
    from filelock import FileLock

    memo_key = (namespace, key)
    found = MEMO.get(memo_key)
    if found is not None:
        return found
    if not disk:
        value = compute()
        MEMO.put(memo_key, value, _nbytes(value))
        return value
    final = entry_dir(namespace, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    value = _read_complete(final, read)
    if value is None:
        with FileLock(str(final) + ".lock"):
            value = _read_complete(final, read)  # another trial may have written it while we waited
            if value is None:
                value = _write_atomically(final, compute(), write)
    MEMO.put(memo_key, value, _nbytes(value))
    return value


def _read_complete(directory: Path, read):
    marker = directory / _COMPLETE
    if not marker.exists():
        return None
    names = json.loads(marker.read_text())["names"]
    return read(directory, names)


def _write_atomically(final: Path, computed, write):
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        value = write(staging, computed)
        names = sorted(value) if isinstance(value, dict) else []
        (staging / _COMPLETE).write_text(json.dumps({"names": names}))
        if final.exists():  # an incomplete leftover of a killed writer (we hold the lock: nobody else writes)
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return value


def _nbytes(value) -> int:
    if isinstance(value, dict):
        return sum(np.asarray(v).nbytes for v in value.values())
    return int(getattr(value, "nbytes", 0))
