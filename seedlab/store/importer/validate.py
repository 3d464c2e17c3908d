"""Checks of prediction tables: each file once (`validate_predictions`), then the runs of a task together
(`check_task`). Every failure is one line naming the file, the row where there is one, and what is valid."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seedlab.errors import SeedlabError
from seedlab.store.importer.read import TableFile

PRED_REQUIRED = ("instance_id", "label", "prediction")
PROB_SUM_TOLERANCE = 0.01  # rows of probs must sum to 1 within this (catches logits passed as probs)
_PROB_COL = re.compile(r"prob_(\d+)")
_VALID_PRED_COLUMNS = "instance_id, label, prediction; optional: probs (a list) or prob_0..prob_{C-1}"


@dataclass
class Predictions:
    """One validated prediction file, whatever its format."""

    file: TableFile  # names the file and its rows in messages
    ids: np.ndarray  # (m,) str, unique
    label: np.ndarray  # (m,) float64, finite (whatever the file stored)
    prediction: np.ndarray
    label_is_float: bool  # stored as floating point: the sign of regression for a task seedlab does not know
    prediction_is_float: bool
    probs: np.ndarray | None  # (m, C) float64, finite

    @property
    def name(self) -> str:
        return self.file.name


def validate_predictions(file: TableFile) -> Predictions:
    """Column names, types and values of one prediction file; task-independent."""
    table, where = file.table, file.name
    if not table.column_names:
        raise SeedlabError(f"{where}: is empty (needs the columns {_VALID_PRED_COLUMNS})")
    prob_cols = _check_column_names(where, table.column_names, list_probs_ok=file.path.suffix != ".csv")
    if table.num_rows == 0:
        raise SeedlabError(f"{where}: has no rows")
    ids = _ids(file)
    label, label_is_float = _numbers(file, "label")
    prediction, prediction_is_float = _numbers(file, "prediction")
    if "probs" in table.column_names:
        probs = _list_probs(file)
    elif prob_cols:
        probs = np.stack([_numbers(file, c)[0] for c in prob_cols], axis=1)
    else:
        probs = None
    return Predictions(file, ids, label, prediction, label_is_float, prediction_is_float, probs)


def _check_column_names(where: str, names: list[str], list_probs_ok: bool) -> list[str]:
    """The prob_k columns in order ([] if none); errors for missing, unknown or clashing columns."""
    missing = [c for c in PRED_REQUIRED if c not in names]
    if missing:
        raise SeedlabError(f"{where}: missing column(s) {missing} (required: {_VALID_PRED_COLUMNS})")
    if len(set(names)) != len(names):
        dup = sorted(n for n, c in Counter(names).items() if c > 1)
        raise SeedlabError(f"{where}: repeated column(s) {dup}")
    prob_cols = sorted((n for n in names if _PROB_COL.fullmatch(n)), key=lambda n: int(n[5:]))
    unknown = [n for n in names if n not in PRED_REQUIRED and n != "probs" and n not in prob_cols]
    if "probs" in names and not list_probs_ok:
        unknown.append("probs")
    if unknown:
        raise SeedlabError(f"{where}: unknown column(s) {unknown} (valid: {_VALID_PRED_COLUMNS}"
                           f"{'' if list_probs_ok else '; a CSV file has prob_k columns, not probs'})")
    if prob_cols and "probs" in names:
        raise SeedlabError(f"{where}: has both probs and prob_k columns; give one of them")
    expected = [f"prob_{k}" for k in range(len(prob_cols))]
    if prob_cols != expected:
        raise SeedlabError(f"{where}: prob columns {prob_cols} are not prob_0..prob_{len(prob_cols) - 1}")
    return prob_cols


def _first(mask) -> int:
    """Index of the first true value of a numpy or pyarrow mask."""
    if isinstance(mask, (pa.Array, pa.ChunkedArray)):
        mask = mask.to_numpy(zero_copy_only=False)
    return int(np.flatnonzero(mask)[0])


def _ids(file: TableFile) -> np.ndarray:
    """Instance ids as strings: text as written, integers in decimal."""
    col = file.table.column("instance_id")
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_integer(col.type)
            or pa.types.is_null(col.type)):
        raise SeedlabError(f"{file.name}: instance_id has type {col.type} (valid: string or integer)")
    text = pc.cast(col, pa.string())
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True)
    if pc.any(blank).as_py():
        i = _first(blank)
        raise SeedlabError(f"{file.name} {file.row(i)}: instance_id {col[i].as_py()!r} is empty or not a "
                           f"string/integer")
    ids = np.asarray(text.to_pylist(), dtype=str)
    if len(set(ids.tolist())) != len(ids):
        dup = [k for k, c in Counter(ids.tolist()).items() if c > 1][:3]
        raise SeedlabError(f"{file.name}: duplicate instance_id values (e.g. {dup}); each instance must appear once")
    return ids


def _numbers(file: TableFile, name: str) -> tuple[np.ndarray, bool]:
    """A numeric column -> (float64 array, whether it is stored as floating point)."""
    col = file.table.column(name)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_null(col.type):
        # text where numbers belong (the CSV reader types a column as text when one cell is no number)
        values = col.to_pylist()
        i = next((i for i, v in enumerate(values) if not _is_number_text(v)), 0)
        if values[i] is None:
            what = file.missing
        elif not values[i].strip():
            what = "empty"
        else:
            what = f"not a number ({values[i]!r})"
        raise SeedlabError(f"{file.name} {file.row(i)}: {name} is {what}")
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise SeedlabError(f"{file.name}: {name} has type {col.type} (valid: integer or floating point)")
    if col.null_count:
        raise SeedlabError(f"{file.name} {file.row(_first(col.is_null()))}: {name} is {file.missing}")
    arr = col.to_numpy().astype(np.float64)
    if not np.all(np.isfinite(arr)):
        i = _first(~np.isfinite(arr))
        raise SeedlabError(f"{file.name} {file.row(i)}: {name} is {arr[i]} (must be finite)")
    return arr, pa.types.is_floating(col.type)


def _is_number_text(value) -> bool:
    if value is None:
        return False
    try:
        pa.scalar(value.strip()).cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _list_probs(file: TableFile) -> np.ndarray:
    """The probs list column -> (m, C) float64."""
    flat = file.table.column("probs").combine_chunks()
    if not (pa.types.is_list(flat.type) or pa.types.is_large_list(flat.type) or pa.types.is_fixed_size_list(flat.type)) \
            or not any(check(flat.type.value_type) for check in (pa.types.is_floating, pa.types.is_integer,
                                                                 pa.types.is_null)):
        raise SeedlabError(f"{file.name}: probs has type {flat.type} (valid: a list of floats per row)")
    if flat.null_count:
        raise SeedlabError(f"{file.name} {file.row(_first(flat.is_null()))}: probs is {file.missing} (valid: a "
                           f"list of C probabilities per row)")
    if pa.types.is_fixed_size_list(flat.type):
        flat = flat.cast(pa.list_(flat.type.value_type))
    lengths = pc.list_value_length(flat).to_numpy()
    if lengths[0] == 0 or np.any(lengths != lengths[0]):
        bad = _first(lengths != lengths[0]) if np.any(lengths != lengths[0]) else 0
        raise SeedlabError(f"{file.name}: probs rows have unequal or zero lengths ({file.row(bad)} has "
                           f"{lengths[bad]}, {file.row(0)} has {lengths[0]})")
    values = flat.flatten()
    width = int(lengths[0])
    if values.null_count:
        row = _first(values.is_null().to_numpy(zero_copy_only=False)) // width
        raise SeedlabError(f"{file.name} {file.row(row)}: probs holds a {file.missing} value")
    probs = values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(flat), width)
    finite = np.isfinite(probs).all(axis=1)
    if not finite.all():
        row = _first(~finite)
        raise SeedlabError(f"{file.name} {file.row(row)}: probs hold {probs[row][~np.isfinite(probs[row])][0]} "
                           f"(must be finite)")
    return probs


def check_task(task: str, files: list[Predictions]) -> bool:
    """The runs of one task together: a regression or a classification task (returned: is it regression),
    values valid for it, and the same instances with the same labels in every run."""
    from seedlab.data.tasks import TASKS

    spec = TASKS.get(task)
    if spec is not None:
        regression = spec.is_regression
    else:  # unknown task: regression when a run has no probs and stores label or prediction as floats
        kinds = {f.probs is None and (f.label_is_float or f.prediction_is_float) for f in files}
        if len(kinds) > 1:
            raise SeedlabError(f"runs of task {task!r} mix classification (integer labels/predictions or probs) "
                               f"and regression (float values, no probs): e.g. {files[0].name} vs {files[1].name}")
        regression = kinds.pop()
    for f in files:
        _check_values(task, f, regression, spec)
    ref = files[0]
    ref_pos = {iid: i for i, iid in enumerate(ref.ids.tolist())}
    for f in files[1:]:
        if len(f.ids) != len(ref.ids) or any(i not in ref_pos for i in f.ids.tolist()):
            only = sorted(set(f.ids.tolist()) - set(ref_pos))[:3]
            lacking = sorted(set(ref_pos) - set(f.ids.tolist()))[:3]
            raise SeedlabError(f"runs of task {task!r} do not share instance ids: {f.name} has {len(f.ids)}, "
                               f"{ref.name} has {len(ref.ids)} (only in {f.name}: {only}; missing from it: "
                               f"{lacking}); every run of a task must predict the same instances")
        order = np.fromiter((ref_pos[i] for i in f.ids.tolist()), dtype=np.int64, count=len(f.ids))
        differs = np.flatnonzero(f.label != ref.label[order])
        if len(differs):
            raise SeedlabError(f"runs of task {task!r} disagree on labels: {f.name} and {ref.name} differ at "
                               f"{len(differs)} instance(s), e.g. {str(f.ids[int(differs[0])])!r}")
    return regression


def _check_values(task: str, f: Predictions, regression: bool, spec) -> None:
    where = f.name
    if regression:
        if f.probs is not None:
            raise SeedlabError(f"{where}: task {task!r} is a regression task; probs columns are not allowed")
        return
    for name, arr in (("label", f.label), ("prediction", f.prediction)):
        bad = np.flatnonzero(arr != np.round(arr))
        if len(bad):
            raise SeedlabError(f"{where} {f.file.row(int(bad[0]))}: {name} is {arr[bad[0]]}; task {task!r} is a "
                               f"classification task and needs integer class ids")
    num_classes = spec.num_labels if spec is not None else (None if f.probs is None else f.probs.shape[1])
    if f.probs is not None and num_classes is not None and f.probs.shape[1] != num_classes:
        raise SeedlabError(f"{where}: probs have {f.probs.shape[1]} columns; task {task!r} has {num_classes} "
                           f"classes ({', '.join(spec.labels)})")
    for name, arr in (("label", f.label), ("prediction", f.prediction)):
        bad = np.flatnonzero((arr < 0) | ((arr >= num_classes) if num_classes is not None else False))
        if len(bad):
            valid = f"0..{num_classes - 1}" if num_classes is not None else "integers >= 0"
            names = f" = {', '.join(spec.labels)}" if spec is not None else ""
            raise SeedlabError(f"{where} {f.file.row(int(bad[0]))}: {name} is {int(arr[bad[0]])} (valid class ids "
                               f"for task {task!r}: {valid}{names})")
    if f.probs is not None:
        if np.any(f.probs < 0):
            row = _first(np.any(f.probs < 0, axis=1))
            raise SeedlabError(f"{where} {f.file.row(row)}: probs are negative; give probabilities (softmax of "
                               f"logits)")
        sums = f.probs.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1.0) > PROB_SUM_TOLERANCE)
        if len(off):
            raise SeedlabError(f"{where} {f.file.row(int(off[0]))}: probs sum to {sums[off[0]]:.4g}, not 1 (within "
                               f"{PROB_SUM_TOLERANCE}); give probabilities (softmax of logits), not logits")
