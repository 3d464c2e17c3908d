"""The per-run artifacts: predictions (`predictions/<split>.parquet`) and, optionally, layer-wise
first-token representations (`representations/<split>.safetensors`).

Columns: `instance_id` (string), `label` and `prediction` (int64 class ids, or float32 for regression)
and, for classification, `probs` (list<float32>, one probability per class). This module is the only
place that writes or reads it, and reading validates the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seedlab.errors import SeedlabError


@dataclass(frozen=True)
class PredictionFile:
    instance_ids: np.ndarray  # (m,) str
    labels: np.ndarray  # (m,)
    predictions: np.ndarray  # (m,)
    probs: np.ndarray | None  # (m, C) float32


def write_predictions(path, instance_ids, labels, predictions, probs=None) -> Path:
    regression = probs is None and np.asarray(predictions).dtype.kind == "f"
    value_type = pa.float32() if regression else pa.int64()
    columns = {
        "instance_id": pa.array([str(i) for i in instance_ids], pa.string()),
        "label": pa.array(np.asarray(labels), value_type),
        "prediction": pa.array(np.asarray(predictions), value_type),
    }
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float32)
        columns["probs"] = pa.FixedSizeListArray.from_arrays(pa.array(probs.ravel(), pa.float32()), probs.shape[1])
        columns["probs"] = columns["probs"].cast(pa.list_(pa.float32()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def read_predictions(path, source: str | None = None) -> PredictionFile:
    """Read and validate; `source` (e.g. a run id) names the artifact in error messages."""
    where = source or str(path)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise SeedlabError(f"malformed predictions artifact ({where}): not a readable parquet file ({exc})") from None
    required = {"instance_id", "label", "prediction"}
    missing = required - set(table.column_names)
    if missing:
        raise SeedlabError(
            f"malformed predictions artifact ({where}): missing column(s) {sorted(missing)} "
            f"(required: instance_id, label, prediction; optional: probs)"
        )
    ids = np.asarray(table.column("instance_id").to_pylist(), dtype=object).astype(str)
    if len(set(ids)) != len(ids):
        raise SeedlabError(f"malformed predictions artifact ({where}): duplicate instance_id values")
    labels = table.column("label").to_numpy()
    preds = table.column("prediction").to_numpy()
    probs = None
    if "probs" in table.column_names:
        flat = table.column("probs").combine_chunks()
        lengths = set(flat.value_lengths().to_pylist()) if len(flat) else {0}
        if len(lengths) != 1 or flat.null_count:
            raise SeedlabError(f"malformed predictions artifact ({where}): probs rows have unequal lengths or nulls")
        probs = flat.flatten().to_numpy().astype(np.float32).reshape(len(ids), lengths.pop())
    return PredictionFile(ids, labels, preds, probs)


REPRESENTATION_KEY = "first_token"


def write_representations(path, states) -> Path:
    """(L, m, d) first-token states as float16 safetensors; instances in the predictions file's row order."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({REPRESENTATION_KEY: np.ascontiguousarray(states, dtype=np.float16)}, str(path),
              metadata={"layout": "layer, instance (predictions row order), hidden"})
    return path


def read_representations(path, source: str | None = None) -> np.ndarray:
    from safetensors.numpy import load_file

    try:
        states = load_file(str(path))[REPRESENTATION_KEY]
    except Exception as exc:  # noqa: BLE001
        raise SeedlabError(f"malformed representations artifact ({source or path}): {exc}") from None
    if states.ndim != 3:
        raise SeedlabError(f"malformed representations artifact ({source or path}): expected (layers, instances, "
                           f"hidden), got shape {states.shape}")
    return states
