"""What a reader hands to the logger: the runs of a validated folder, already in seedlab's conventions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from seedlab.store.contract import trial_run_name


@dataclass
class ImportedRun:
    """One run to import: its cell, its arrays (already in seedlab's label convention) and its extra params."""

    source_run: str  # name inside the source folder: generic file stem, or "seed_<k>/<set>"
    source_file: str  # path relative to the source folder
    task: str
    model: str
    pretrain_seed: int
    finetune_seed: int
    method: str
    instance_ids: np.ndarray  # (m,) str
    labels: np.ndarray  # (m,) int64, or float32 for regression
    predictions: np.ndarray  # (m,) like labels
    probs: np.ndarray | None  # (m, C) float32
    extra_params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # eval_<metric> -> value, filled by the reader

    @property
    def is_regression(self) -> bool:
        return self.labels.dtype.kind == "f"

    @property
    def cell(self) -> tuple:
        return (self.task, self.model, self.method, self.pretrain_seed, self.finetune_seed)

    @property
    def run_name(self) -> str:
        """The name a sweep gives the same cell (`seedlab.store.contract.trial_run_name`)."""
        return trial_run_name(self.task, self.model, self.pretrain_seed, self.finetune_seed, self.method)

    def digest(self) -> str:
        """sha256 of the cell and the arrays: a re-import with other content is told apart from a repeat."""
        h = hashlib.sha256(json.dumps([*self.cell], separators=(",", ":")).encode())
        h.update("\0".join(self.instance_ids.tolist()).encode())
        for arr in (self.labels, self.predictions, self.probs):
            if arr is not None:
                h.update(str(arr.dtype).encode() + str(arr.shape).encode())
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


@dataclass
class ImportPlan:
    """A validated folder, ready to log. Building one never touches MLflow."""

    format: str
    source: str  # absolute path of the folder
    source_id: str  # the folder's name: with a run's name, it makes the trial key
    sweep: str  # the seedlab.sweep tag: "import:<name>"
    default_experiment: str
    runs: list[ImportedRun]
    notes: list[str] = field(default_factory=list)  # what was left out, and why
