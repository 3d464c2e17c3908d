"""The data model of a seed experiment: runs of one task on one evaluation split, and seed grids.

``RunTable`` holds every run of ONE task on ONE eval split (all models, all seeds, optionally several
mitigation methods). ``RunTable.grid(model)`` arranges one model's runs as arrays indexed
``[pretraining seed, fine-tuning seed, instance]`` (a ``SeedGrid``). Designs may be ragged (a fine-tuning
run missing); a ragged grid says so (``present``, ``missing_cells``), never fills a hole, and
``SeedGrid.complete()`` cuts it down to the largest balanced sub-design by a documented, deterministic
rule that reports what it dropped.

Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = ["RunTable", "SeedGrid", "design_report", "STANDARD_METHOD"]

#: The method name of plain fine-tuning; ``RunTable.method is None`` means every run is this.
STANDARD_METHOD = "standard"


def _as_1d(name: str, value, n: int | None = None, dtype=None) -> np.ndarray:
    arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n} (one per run)")
    return arr


def _as_int_array(name: str, value, n: int) -> np.ndarray:
    arr = _as_1d(name, value, n)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer seeds, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _missing_fill(dtype: np.dtype):
    """Value written into grid cells with no run: NaN for floats, the dtype's minimum for integers."""
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    if dtype.kind == "b":
        return False
    return None


@dataclass(frozen=True)
class SeedGrid:
    """One model's runs indexed ``[pretraining seed, fine-tuning seed, instance]``.

    Attributes:
        model: the model name.
        pretrain_seeds: (P,) sorted pretraining seeds.
        finetune_seeds: (F,) sorted fine-tuning seeds, the union over pretraining seeds.
        present: (P, F) bool, whether that (pretraining seed, fine-tuning seed) run exists.
        predictions: (P, F, m) predictions. Cells with ``present == False`` hold NaN (float predictions)
            or the dtype's minimum integer (``np.iinfo(dtype).min``); they are placeholders, never data.
        correct: (P, F, m) float correctness (1.0 / 0.0), NaN where not present; None for regression.
        probs: (P, F, m, C) class probabilities (NaN where not present), or None.
        run_ids: (P, F) object array of run ids (None where not present).
        dropped: cells ``(pretrain_seed, finetune_seed)`` of existing runs that ``complete()`` removed.
        note: human-readable account of what ``complete()`` did ("" when nothing was dropped).
    """

    model: str
    pretrain_seeds: np.ndarray
    finetune_seeds: np.ndarray
    present: np.ndarray
    predictions: np.ndarray
    correct: np.ndarray | None
    probs: np.ndarray | None
    run_ids: np.ndarray | None = None
    dropped: tuple = ()
    note: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(P, F, m)."""
        return tuple(self.predictions.shape[:3])  # type: ignore[return-value]

    @property
    def n_runs(self) -> int:
        return int(self.present.sum())

    def is_complete(self) -> bool:
        """True when every pretraining seed has every fine-tuning seed (a balanced P x F design)."""
        return bool(self.present.all())

    def missing_cells(self) -> list[tuple[int, int]]:
        """The (pretrain_seed, finetune_seed) cells without a run, in sorted order."""
        ii, jj = np.nonzero(~self.present)
        return [(int(self.pretrain_seeds[i]), int(self.finetune_seeds[j])) for i, j in zip(ii, jj)]

    def complete(self) -> "SeedGrid":
        """The largest balanced sub-design, chosen deterministically; reports what it dropped.

        Rule: choose a set of pretraining seeds P' and fine-tuning seeds F' such that every cell of
        P' x F' has a run, maximising the number of runs kept |P'| * |F'|. Ties go to the larger |P'|
        (pretraining seeds are the scarcer unit and carry the between-seed variance), then to the
        lexicographically smaller sorted list of pretraining seeds, then of fine-tuning seeds. The search
        is exact: an optimal F' is always the intersection of the fine-tuning sets of the pretraining seeds
        that keep it, so all such intersections (closed sets) are enumerated.

        Returns a grid with ``is_complete()`` True; ``dropped`` lists every existing run (as
        ``(pretrain_seed, finetune_seed)``) that was left out and ``note`` says so in words. A complete
        grid is returned unchanged.
        """
        if self.is_complete():
            return self
        P, F = self.present.shape
        masks = [sum(1 << j for j in range(F) if self.present[i, j]) for i in range(P)]
        closed: set[int] = {mk for mk in masks if mk}
        frontier = set(closed)
        while frontier:
            new: set[int] = set()
            for a in frontier:
                for b in masks:
                    c = a & b
                    if c and c not in closed:
                        new.add(c)
            closed |= new
            frontier = new
        if not closed:
            raise ValueError(f"model {self.model!r} has no runs at all; nothing to complete")

        best_key = None
        best = None
        for s in closed:
            cols = [j for j in range(F) if s >> j & 1]
            rows = [i for i in range(P) if masks[i] & s == s]
            key = (
                -len(rows) * len(cols),
                -len(rows),
                [int(self.pretrain_seeds[i]) for i in rows],
                [int(self.finetune_seeds[j]) for j in cols],
            )
            if best_key is None or key < best_key:
                best_key, best = key, (rows, cols)
        rows, cols = best  # type: ignore[misc]
        r = np.asarray(rows)
        c = np.asarray(cols)
        keep = np.zeros_like(self.present)
        keep[np.ix_(r, c)] = True
        ii, jj = np.nonzero(self.present & ~keep)
        dropped = tuple((int(self.pretrain_seeds[i]), int(self.finetune_seeds[j])) for i, j in zip(ii, jj))
        dropped_p = sorted(set(int(x) for x in self.pretrain_seeds) - set(int(self.pretrain_seeds[i]) for i in rows))
        dropped_f = sorted(set(int(x) for x in self.finetune_seeds) - set(int(self.finetune_seeds[j]) for j in cols))
        note = (
            f"model {self.model!r}: kept a balanced {len(rows)} x {len(cols)} design "
            f"({len(rows) * len(cols)} of {self.n_runs} runs); dropped {len(dropped)} run(s) "
            f"{list(dropped)}; pretraining seeds dropped {dropped_p}, fine-tuning seeds dropped {dropped_f}; "
            f"missing cells were {self.missing_cells()}"
        )
        sub = lambda a: None if a is None else a[np.ix_(r, c)]  # noqa: E731
        return replace(
            self,
            pretrain_seeds=self.pretrain_seeds[r],
            finetune_seeds=self.finetune_seeds[c],
            present=self.present[np.ix_(r, c)],
            predictions=sub(self.predictions),
            correct=sub(self.correct),
            probs=sub(self.probs),
            run_ids=sub(self.run_ids),
            dropped=dropped,
            note=note,
        )


@dataclass(frozen=True)
class RunTable:
    """All runs of ONE task on ONE evaluation split.

    Attributes:
        task: task name.
        instance_ids: (m,) unique instance ids (str).
        labels: (m,) int class labels, or float targets when ``is_regression``.
        run_ids: (n,) unique run ids (str).
        model: (n,) model name per run.
        pretrain_seed: (n,) int pretraining seed per run.
        finetune_seed: (n,) int fine-tuning seed per run.
        predictions: (n, m) predicted labels (int) or values (float, regression).
        probs: (n, m, C) class probabilities, or None (regression, or not logged).
        is_regression: True for regression tasks (STS-B).
        method: (n,) mitigation method per run, or None meaning every run is ``"standard"``.

    Validation (``ValueError`` with a one-line message): shapes agree, instance and run ids are unique,
    there is at least one run and one instance, classification labels/predictions are integers, and no
    (model, method, pretrain_seed, finetune_seed) cell holds two runs.
    """

    task: str
    instance_ids: np.ndarray
    labels: np.ndarray
    run_ids: np.ndarray
    model: np.ndarray
    pretrain_seed: np.ndarray
    finetune_seed: np.ndarray
    predictions: np.ndarray
    probs: np.ndarray | None
    is_regression: bool = False
    method: np.ndarray | None = None
    hp_config: np.ndarray | None = None  # (n,) hyperparameter-configuration id per run, or None (one config)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        inst = _as_1d("instance_ids", self.instance_ids).astype(str)
        m = inst.shape[0]
        if m == 0:
            raise ValueError("instance_ids is empty; a RunTable needs at least one instance")
        uniq, counts = np.unique(inst, return_counts=True)
        if uniq.shape[0] != m:
            raise ValueError(f"instance_ids are not unique (duplicated: {uniq[counts > 1][:5].tolist()})")
        set_("instance_ids", inst)

        labels = _as_1d("labels", self.labels)
        if labels.shape[0] != m:
            raise ValueError(f"labels has {labels.shape[0]} entries, expected {m} (one per instance)")
        preds = np.asarray(self.predictions)
        if preds.ndim != 2:
            raise ValueError(f"predictions must be 2-D (runs, instances), got shape {preds.shape}")
        n = preds.shape[0]
        if n == 0:
            raise ValueError("predictions has no runs; a RunTable needs at least one run")
        if preds.shape[1] != m:
            raise ValueError(f"predictions has {preds.shape[1]} instances, expected {m} (len(instance_ids))")
        if self.is_regression:
            labels = labels.astype(np.float64)
            preds = preds.astype(np.float64)
            if self.probs is not None:
                raise ValueError("probs must be None for a regression task")
        else:
            for name, arr in (("labels", labels), ("predictions", preds)):
                if arr.dtype.kind not in "iub" and not (
                    arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
                ):
                    raise ValueError(
                        f"{name} must be integer class labels for a classification task (got dtype {arr.dtype}); "
                        "pass is_regression=True for regression"
                    )
            labels = labels.astype(np.int64)
            preds = preds.astype(np.int64)
        set_("labels", labels)
        set_("predictions", preds)
        set_("is_regression", bool(self.is_regression))

        run_ids = _as_1d("run_ids", self.run_ids, n).astype(str)
        ur, rc = np.unique(run_ids, return_counts=True)
        if ur.shape[0] != n:
            raise ValueError(f"run_ids are not unique (duplicated: {ur[rc > 1][:5].tolist()})")
        set_("run_ids", run_ids)
        set_("model", _as_1d("model", self.model, n).astype(str))
        set_("pretrain_seed", _as_int_array("pretrain_seed", self.pretrain_seed, n))
        set_("finetune_seed", _as_int_array("finetune_seed", self.finetune_seed, n))
        if self.method is not None:
            set_("method", _as_1d("method", self.method, n).astype(str))
        if self.hp_config is not None:
            set_("hp_config", _as_1d("hp_config", self.hp_config, n).astype(str))

        if self.probs is not None:
            probs = np.asarray(self.probs)
            if probs.ndim != 3 or probs.shape[:2] != (n, m):
                raise ValueError(f"probs must have shape ({n}, {m}, C), got {probs.shape}")
            if probs.shape[2] < 2:
                raise ValueError(f"probs needs at least 2 classes on its last axis, got {probs.shape[2]}")
            set_("probs", probs)

        # one run per (model, method, hyperparameter config, pretrain_seed, finetune_seed)
        meth = self.methods_per_run()
        configs = self.hp_config if self.hp_config is not None else np.full(n, "")
        keys = np.rec.fromarrays([self.model, meth, configs, self.pretrain_seed, self.finetune_seed])
        uk, kc = np.unique(keys, return_counts=True)
        if uk.shape[0] != n:
            dup = uk[kc > 1][0]
            config = f", hp_config={str(dup[2])!r}" if self.hp_config is not None else ""
            raise ValueError(
                f"duplicate run cell: model={str(dup[0])!r}, method={str(dup[1])!r}{config}, "
                f"pretrain_seed={int(dup[3])}, finetune_seed={int(dup[4])} has {int(kc[kc > 1][0])} runs; "
                "each cell must have one"
            )

    # ------------------------------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        task: str,
        labels,
        model,
        pretrain_seed,
        finetune_seed,
        predictions,
        probs=None,
        *,
        instance_ids=None,
        run_ids=None,
        is_regression: bool = False,
        method=None,
    ) -> "RunTable":
        """Build a table from per-run arrays, generating the ids that are not given.

        Parameters
        ----------
        task : str
            Task name.
        labels : array-like of shape (m,)
            Gold labels (int) or targets (float, regression).
        model, pretrain_seed, finetune_seed : array-like of shape (n,)
            Model name and seeds of each run.
        predictions : array-like of shape (n, m)
            Predicted labels or values.
        probs : array-like of shape (n, m, C), optional
            Class probabilities.
        instance_ids : array-like of shape (m,), optional
            Default "0", "1", ...
        run_ids : array-like of shape (n,), optional
            Default "model/method/p<seed>/f<seed>".
        is_regression : bool, default=False
            Float targets and predictions, no probabilities.
        method : array-like of shape (n,), optional
            Mitigation method of each run (None: all ``"standard"``).

        Returns
        -------
        RunTable
            The validated table (see the class docstring for what is checked).
        """
        predictions = np.asarray(predictions)
        labels = np.asarray(labels)
        if instance_ids is None:
            instance_ids = np.arange(labels.shape[0]).astype(str)
        if run_ids is None:
            model_a = np.asarray(model).astype(str)
            meth = (
                np.full(model_a.shape, STANDARD_METHOD) if method is None else np.asarray(method).astype(str)
            )
            run_ids = np.array(
                [
                    f"{mo}/{me}/p{int(p)}/f{int(f)}"
                    for mo, me, p, f in zip(model_a, meth, np.asarray(pretrain_seed), np.asarray(finetune_seed))
                ]
            )
        return cls(
            task=task,
            instance_ids=instance_ids,
            labels=labels,
            run_ids=run_ids,
            model=model,
            pretrain_seed=pretrain_seed,
            finetune_seed=finetune_seed,
            predictions=predictions,
            probs=probs,
            is_regression=is_regression,
            method=method,
        )

    @property
    def n_runs(self) -> int:
        return int(self.predictions.shape[0])

    @property
    def n_instances(self) -> int:
        return int(self.predictions.shape[1])

    def methods_per_run(self) -> np.ndarray:
        """(n,) method of each run (``"standard"`` everywhere when ``method`` is None)."""
        if self.method is None:
            return np.full(self.n_runs, STANDARD_METHOD)
        return self.method

    def models(self) -> list[str]:
        """Sorted unique model names."""
        return sorted(set(self.model.tolist()))

    def methods(self) -> list[str]:
        """Sorted unique method names (``["standard"]`` when ``method`` is None)."""
        return sorted(set(self.methods_per_run().tolist()))

    def subset(self, *, model: str | None = None, method: str | None = None) -> "RunTable":
        """The runs of ``model`` and/or ``method`` (None means any). Raises ``ValueError`` if nothing matches."""
        keep = np.ones(self.n_runs, dtype=bool)
        if model is not None:
            keep &= self.model == str(model)
        if method is not None:
            keep &= self.methods_per_run() == str(method)
        if not keep.any():
            raise ValueError(
                f"no runs with model={model!r}, method={method!r} "
                f"(models: {self.models()}, methods: {self.methods()})"
            )
        return replace(
            self,
            run_ids=self.run_ids[keep],
            model=self.model[keep],
            pretrain_seed=self.pretrain_seed[keep],
            finetune_seed=self.finetune_seed[keep],
            predictions=self.predictions[keep],
            probs=None if self.probs is None else self.probs[keep],
            method=None if self.method is None else self.method[keep],
            hp_config=None if self.hp_config is None else self.hp_config[keep],
        )

    def hp_configs(self) -> list[str]:
        """Sorted unique hyperparameter-configuration ids (``[""]`` when there is one unnamed config)."""
        return [""] if self.hp_config is None else sorted(set(self.hp_config.tolist()))

    def correctness(self) -> np.ndarray:
        """(n, m) float: 1.0 where the prediction equals the label, else 0.0. Classification only."""
        if self.is_regression:
            raise ValueError(f"task {self.task!r} is regression; correctness is defined for classification only")
        return (self.predictions == self.labels[None, :]).astype(np.float64)

    def grid(self, model: str, *, method: str | None = None) -> SeedGrid:
        """One model's runs as a ``SeedGrid`` indexed [pretraining seed, fine-tuning seed, instance].

        ``method`` selects the mitigation method; it may be omitted when the model's runs use one method
        only. Missing cells are marked in ``present`` and hold placeholders, never data.
        """
        if str(model) not in self.models():
            raise ValueError(f"unknown model {model!r} (valid: {', '.join(self.models())})")
        sub = self.subset(model=model)
        meths = sub.methods()
        if method is None:
            if len(meths) > 1:
                raise ValueError(f"model {model!r} has runs under several methods {meths}; pass method=")
        else:
            sub = sub.subset(method=method)
        if len(sub.hp_configs()) > 1:
            raise ValueError(f"model {model!r} has runs under several hyperparameter configs {sub.hp_configs()}; "
                             "a seed grid needs one (analyse each config on its own)")
        pseeds = np.unique(sub.pretrain_seed)
        fseeds = np.unique(sub.finetune_seed)
        pi = np.searchsorted(pseeds, sub.pretrain_seed)
        fi = np.searchsorted(fseeds, sub.finetune_seed)
        P, F, m = len(pseeds), len(fseeds), sub.n_instances
        present = np.zeros((P, F), dtype=bool)
        present[pi, fi] = True

        preds = np.full((P, F, m), _missing_fill(sub.predictions.dtype), dtype=sub.predictions.dtype)
        preds[pi, fi] = sub.predictions
        correct = None
        if not sub.is_regression:
            correct = np.full((P, F, m), np.nan)
            correct[pi, fi] = sub.correctness()
        probs = None
        if sub.probs is not None:
            fdt = sub.probs.dtype if sub.probs.dtype.kind == "f" else np.float64
            probs = np.full((P, F, m, sub.probs.shape[2]), np.nan, dtype=fdt)
            probs[pi, fi] = sub.probs
        run_ids = np.full((P, F), None, dtype=object)
        run_ids[pi, fi] = sub.run_ids
        return SeedGrid(
            model=str(model),
            pretrain_seeds=pseeds,
            finetune_seeds=fseeds,
            present=present,
            predictions=preds,
            correct=correct,
            probs=probs,
            run_ids=run_ids,
        )


def _grid_stats(g: SeedGrid) -> dict[str, Any]:
    runs_per_p = g.present.sum(axis=1)
    return {
        "n_runs": g.n_runs,
        "P": int(g.present.shape[0]),
        "F": int(g.present.shape[1]),
        "complete": g.is_complete(),
        "missing_cells": g.missing_cells(),
        "pretrain_seeds": [int(s) for s in g.pretrain_seeds],
        "finetune_seeds": [int(s) for s in g.finetune_seeds],
        "runs_per_pretrain_seed": {int(s): int(c) for s, c in zip(g.pretrain_seeds, runs_per_p)},
    }


def design_report(table: RunTable) -> dict[str, dict[str, Any]]:
    """Per model: number of runs and, per method, the seed design and its holes.

    Parameters
    ----------
    table : RunTable
        The runs of one task.

    Returns
    -------
    dict
        ``{model: {"n_runs": int, "methods": [..], "by_method": {method: stats}}}`` where ``stats`` has
        ``n_runs, P, F, complete, missing_cells, pretrain_seeds, finetune_seeds, runs_per_pretrain_seed``
        (F is the number of distinct fine-tuning seeds over all pretraining seeds). When a model has one
        method only, ``stats`` is also merged into the model's entry (``report[model]["P"]`` etc.).

    Notes
    -----
    Ragged designs are reported here and handled explicitly (``SeedGrid.complete``), never filled: the
    Zhong et al. estimators need a balanced P x F seed tree.

    References
    ----------
    Zhong, Ghosh, Klein & Steinhardt, Findings of ACL 2021 (arXiv 2105.06020): the P pretraining x F
    fine-tuning seed tree; Sellam et al., ICLR 2022 (arXiv 2106.16163): seeds as the resampled unit.
    """
    report: dict[str, dict[str, Any]] = {}
    for model in table.models():
        sub = table.subset(model=model)
        meths = sub.methods()
        entry: dict[str, Any] = {"n_runs": sub.n_runs, "methods": meths, "by_method": {}}
        for meth in meths:
            entry["by_method"][meth] = _grid_stats(table.grid(model, method=meth))
        if len(meths) == 1:
            entry.update({k: v for k, v in entry["by_method"][meths[0]].items() if k != "n_runs"})
        report[model] = entry
    return report
