"""`seedlab import`: prediction files from elsewhere -> the same MLflow trial runs a sweep logs.

Two layouts are read (docs/import.md has the full description):

* ``generic``: a folder with ``runs.csv`` (run, task, model, pretrain_seed, finetune_seed[, method]) and one
  ``<run>.parquet`` / ``<run>.csv`` / ``<run>.jsonl`` per run (instance_id, label, prediction[, probs]).
* ``zhou2020``: the per-seed layout of Zhou et al. 2020 (``seed_<k>/<set>/pred_results.txt``,
  ``logits_results.txt``, ``eval_results.txt``), scored against gold labels from the data dir.

Reading (`read_folder`) validates the whole folder and builds an `ImportPlan` without touching MLflow.
Only a plan that validated is logged (`import_plan`): each run becomes a FINISHED trial run (params, tags,
``eval_<metric>``, ``predictions/validation.parquet``) nested under one parent run tagged
``seedlab.kind=import``. A run's trial key is a hash of the source folder's name and the run's name in it,
so importing again skips what is already there; a run whose content changed since is refused, never
duplicated.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seedlab.errors import SeedlabError, choice_error

FORMATS = ("generic", "zhou2020")
TAG_SOURCE = "seedlab.source"  # the imported folder (absolute path)
TAG_SOURCE_RUN = "seedlab.source_run"  # the run's name inside that folder
TAG_IMPORT_FORMAT = "seedlab.import_format"
TAG_IMPORT_DIGEST = "seedlab.import_digest"  # sha256 of the imported cell and arrays

RUNS_FILE = "runs.csv"
RUNS_REQUIRED = ("run", "task", "model", "pretrain_seed", "finetune_seed")
RUNS_OPTIONAL = ("method",)
PRED_SUFFIXES = (".parquet", ".csv", ".jsonl")
PRED_REQUIRED = ("instance_id", "label", "prediction")
PROB_SUM_TOLERANCE = 0.01  # rows of probs must sum to 1 within this (catches logits passed as probs)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_PROB_COL = re.compile(r"prob_(\d+)")
_VALID_PRED_COLUMNS = "instance_id, label, prediction; optional: probs (a list) or prob_0..prob_{C-1}"

# Zhou et al. 2020 (owenzx/InstabilityAnalysis): the label order of their 3-way MNLI head.
ZHOU_LABELS = ("contradiction", "entailment", "neutral")
ZHOU_MODEL = "bert-base-zhou2020"
ZHOU_PRETRAIN_SEED = 0  # one public BERT-base checkpoint for every run
ZHOU_SOURCE = "zhou2020"
# set folder -> (seedlab task name, gold file under the data dir, instance id prefix). Ids of dev-matched are
# `dev-{index:06d}`, the scheme seedlab.data.tasks gives its own MNLI rows.
ZHOU_GOLD = {
    "mnli": ("mnli", "glue/MNLI/dev_matched.tsv", "dev"),
    "mnli-mm": ("mnli-mm", "glue/MNLI/dev_mismatched.tsv", "dev_mm"),
}
MNLI_LABELS = ("entailment", "neutral", "contradiction")  # seedlab's MNLI convention (seedlab.data.tasks)
ACCURACY_TOLERANCE = 1e-12  # imported accuracy vs the one the source reports

MCCOY_FILES = ("mnli_development_set_number_of_correct_responses.txt", "berts_of_a_feather_accuracies_by_run.csv")


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
        """Same shape as `seedlab.run.trial.run_name`, plus the method when it is not plain fine-tuning."""
        name = f"{self.task}/{self.model}/p{self.pretrain_seed}/f{self.finetune_seed}"
        return name if self.method == "standard" else f"{name}/{self.method}"

    def digest(self) -> str:
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
    sweep: str  # the seedlab.run.sweep tag: "import:<name>"
    default_experiment: str
    runs: list[ImportedRun]
    notes: list[str] = field(default_factory=list)  # what was left out, and why


@dataclass
class ImportResult:
    format: str
    source: str
    experiment: str
    experiment_id: str | None  # None on a dry run into an experiment that does not exist yet
    tracking_uri: str
    parent_run_id: str | None  # None when nothing was imported
    imported: list[tuple[str, str]]  # (run name, run id); run id "" on a dry run
    skipped: list[str]  # run names already in the experiment with the same trial key and content
    notes: list[str]
    dry_run: bool = False
    runs: list[ImportedRun] = field(default_factory=list, repr=False)


def import_trial_key(source_id: str, source_run: str) -> str:
    """The trial key of an imported run: a deterministic hash of the source folder's name and the run's name."""
    canonical = json.dumps({"import": source_id, "run": source_run}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


# --------------------------------------------------------------------------------------------------
# layout detection
# --------------------------------------------------------------------------------------------------


def detect_format(folder) -> str:
    """The folder's layout: "generic" (runs.csv) or "zhou2020" (seed_<k>/ folders); else a one-line error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SeedlabError(f"import source {folder} is not a directory")
    if (folder / RUNS_FILE).is_file():
        return "generic"
    if any(p.is_dir() and re.fullmatch(r"seed_\d+", p.name) for p in folder.iterdir()):
        return "zhou2020"
    if any((folder / name).is_file() for name in MCCOY_FILES):
        raise SeedlabError(
            f"{folder} is the McCoy et al. 2020 'BERTs of a feather' layout: it holds per-example counts of correct "
            f"runs (out of 100) and per-run accuracies, not per-run predictions, so it cannot be imported as trial "
            f"runs (see docs/import.md)")
    raise SeedlabError(f"{folder}: unrecognised layout (valid: a folder with {RUNS_FILE} (generic), or "
                       f"seed_<k>/ folders (zhou2020); see docs/import.md)")


def read_folder(folder, fmt: str = "auto", data_dir=None) -> ImportPlan:
    """Validate a folder and return its `ImportPlan`. `fmt`: "auto", "generic" or "zhou2020"."""
    if fmt not in ("auto", *FORMATS):
        raise choice_error("import format", fmt, ["auto", *FORMATS])
    if fmt == "auto":
        fmt = detect_format(folder)
    elif not Path(folder).is_dir():
        raise SeedlabError(f"import source {folder} is not a directory")
    return read_generic(folder) if fmt == "generic" else read_zhou2020(folder, data_dir)


# --------------------------------------------------------------------------------------------------
# generic layout
# --------------------------------------------------------------------------------------------------


@dataclass
class _Columns:
    ids: list  # str
    label: np.ndarray  # float64 (whatever the file stored)
    prediction: np.ndarray
    label_is_float: bool
    prediction_is_float: bool
    probs: np.ndarray | None  # float64 (m, C)
    loc: object = None  # loc(i) names data row i in messages: "line 7" (CSV, JSONL) or "row 5" (parquet, from 0)


def read_generic(folder) -> ImportPlan:
    folder = Path(folder).resolve()
    if not (folder / RUNS_FILE).is_file():
        raise SeedlabError(f"{folder}: has no {RUNS_FILE} (the generic layout; see docs/import.md)")
    rows = _read_runs_csv(folder)
    files = _match_files(folder, rows)
    columns = {run: _read_prediction_file(path) for run, path in files.items()}
    runs = _build_generic_runs(rows, files, columns)
    return ImportPlan("generic", str(folder), folder.name, f"import:{folder.name}", f"import-{folder.name}", runs,
                      _probs_notes(runs))


def _read_runs_csv(folder: Path) -> list[dict]:
    path = folder / RUNS_FILE
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        valid = f"required: {', '.join(RUNS_REQUIRED)}; optional: {', '.join(RUNS_OPTIONAL)}"
        missing = [c for c in RUNS_REQUIRED if c not in header]
        if missing:
            raise SeedlabError(f"{RUNS_FILE}: missing column(s) {missing} ({valid})")
        unknown = [c for c in header if c not in RUNS_REQUIRED + RUNS_OPTIONAL]
        if unknown or len(set(header)) != len(header):
            raise SeedlabError(f"{RUNS_FILE}: unknown or repeated column(s) {unknown or header} ({valid})")
        reader.fieldnames = header
        rows, by_run, by_cell = [], {}, {}
        for raw in reader:
            line = reader.line_num
            where = f"{RUNS_FILE} line {line}"
            if None in raw:  # csv.DictReader files surplus fields under the key None
                raise SeedlabError(f"{where}: has {len(header) + len(raw[None])} fields where the header has "
                                   f"{len(header)}")
            if any(v is None for v in raw.values()):
                if not any(v and v.strip() for v in raw.values() if v is not None):
                    continue  # a blank line
                raise SeedlabError(f"{where}: has fewer fields than the header ({len(header)})")
            values = {k: v.strip() for k, v in raw.items()}
            if not any(values.values()):
                continue  # a blank line
            for col in ("run", "task"):
                if not _NAME.fullmatch(values[col]):
                    raise SeedlabError(f"{where}: {col} {values[col]!r} is not a valid name (letters, digits, "
                                       f"'_', '.', '+', '-'; not starting with a symbol)")
            if not values["model"]:
                raise SeedlabError(f"{where}: model is empty")
            seeds = {}
            for col in ("pretrain_seed", "finetune_seed"):
                try:
                    seeds[col] = int(values[col])
                except ValueError:
                    raise SeedlabError(f"{where}: {col} {values[col]!r} is not an integer") from None
            method = values.get("method") or "standard"
            row = {"line": line, "run": values["run"], "task": values["task"], "model": values["model"],
                   **seeds, "method": method}
            if row["run"] in by_run:
                raise SeedlabError(f"{where}: run {row['run']!r} is already listed on line {by_run[row['run']]}")
            cell = (row["task"], row["model"], method, seeds["pretrain_seed"], seeds["finetune_seed"])
            if cell in by_cell:
                raise SeedlabError(f"{where}: duplicate cell (task={cell[0]}, model={cell[1]}, method={cell[2]}, "
                                   f"pretrain_seed={cell[3]}, finetune_seed={cell[4]}) already on line "
                                   f"{by_cell[cell]}: each (task, model, method, seeds) must appear once")
            by_run[row["run"]] = line
            by_cell[cell] = line
            rows.append(row)
    if not rows:
        raise SeedlabError(f"{RUNS_FILE}: lists no runs")
    return rows


def _match_files(folder: Path, rows: list[dict]) -> dict[str, Path]:
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in PRED_SUFFIXES and path.name != RUNS_FILE and not path.name.startswith("."):
            found.setdefault(path.stem, []).append(path)
    listed = {r["run"]: r for r in rows}
    for stem, paths in found.items():
        if stem not in listed:
            shown = ", ".join(list(listed)[:8]) + (", ..." if len(listed) > 8 else "")
            raise SeedlabError(f"{paths[0].name}: unknown run {stem!r}, not in {RUNS_FILE} (runs: {shown})")
    files = {}
    for run, row in listed.items():
        paths = found.get(run, [])
        if not paths:
            raise SeedlabError(f"{RUNS_FILE} line {row['line']}: no prediction file for run {run!r} "
                               f"(expected one of {', '.join(run + s for s in PRED_SUFFIXES)})")
        if len(paths) > 1:
            raise SeedlabError(f"run {run!r} has several prediction files ({', '.join(p.name for p in paths)}); "
                               f"keep one")
        files[run] = paths[0]
    return files


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


def _read_prediction_file(path: Path) -> _Columns:
    where = path.name
    if path.suffix == ".parquet":
        return _read_parquet(path, where)
    if path.suffix == ".csv":
        return _read_csv(path, where)
    return _read_jsonl(path, where)


def _numeric(where: str, column: str, values, loc) -> tuple[np.ndarray, bool]:
    """Values -> (float64 array, whether any was stored as a float). `loc(i)` names row i ("line 3")."""
    values = list(values)
    is_float = False
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or v is None or not isinstance(v, (int, float, np.integer, np.floating)):
            what = "empty" if v is None or (isinstance(v, str) and not v.strip()) else f"not a number ({v!r})"
            raise SeedlabError(f"{where} {loc(i)}: {column} is {what}")
        if isinstance(v, (float, np.floating)):
            is_float = True
            if not math.isfinite(v):
                raise SeedlabError(f"{where} {loc(i)}: {column} is {v} (must be finite)")
        out[i] = v
    return out, is_float


def _ids(where: str, values, loc) -> list[str]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, int, np.integer)) or str(v).strip() == "":
            raise SeedlabError(f"{where} {loc(i)}: instance_id {v!r} is empty or not a string/integer")
        out.append(str(v))
    if len(set(out)) != len(out):
        dup = [k for k, c in Counter(out).items() if c > 1][:3]
        raise SeedlabError(f"{where}: duplicate instance_id values (e.g. {dup}); each instance must appear once")
    if not out:
        raise SeedlabError(f"{where}: has no rows")
    return out


def _row(i: int) -> str:
    return f"row {i}"


def _read_parquet(path: Path, where: str) -> _Columns:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise SeedlabError(f"{where}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    prob_cols = _check_column_names(where, table.column_names, list_probs_ok=True)
    id_col = table.column("instance_id")
    if not (pa.types.is_string(id_col.type) or pa.types.is_large_string(id_col.type)
            or pa.types.is_integer(id_col.type)):
        raise SeedlabError(f"{where}: instance_id has type {id_col.type} (valid: string or integer)")
    ids = _ids(where, id_col.to_pylist(), _row)
    cols = {}
    for name in ("label", "prediction", *prob_cols):
        col = table.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise SeedlabError(f"{where}: {name} has type {col.type} (valid: integer or floating point)")
        if col.null_count:
            raise SeedlabError(f"{where}: {name} has {col.null_count} null value(s)")
        arr = col.to_numpy().astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise SeedlabError(f"{where} {_row(int(np.flatnonzero(~np.isfinite(arr))[0]))}: {name} is not finite")
        cols[name] = (arr, pa.types.is_floating(col.type))
    probs = None
    if "probs" in table.column_names:
        flat = table.column("probs").combine_chunks()
        if not (pa.types.is_list(flat.type) or pa.types.is_large_list(flat.type)
                or pa.types.is_fixed_size_list(flat.type)) or not (
                pa.types.is_floating(flat.type.value_type) or pa.types.is_integer(flat.type.value_type)):
            raise SeedlabError(f"{where}: probs has type {flat.type} (valid: a list of floats per row)")
        if flat.null_count:
            raise SeedlabError(f"{where}: probs has {flat.null_count} null row(s)")
        if pa.types.is_fixed_size_list(flat.type):
            flat = flat.cast(pa.list_(flat.type.value_type))
        lengths = np.asarray(flat.value_lengths().to_numpy(zero_copy_only=False))
        if len(set(lengths.tolist())) != 1 or lengths[0] == 0:
            bad = int(np.flatnonzero(lengths != lengths[0])[0]) if len(set(lengths.tolist())) > 1 else 0
            raise SeedlabError(f"{where}: probs rows have unequal or zero lengths (row {bad} has {lengths[bad]}, "
                               f"row 0 has {lengths[0]})")
        values = flat.flatten()
        if values.null_count:
            raise SeedlabError(f"{where}: probs holds null values")
        probs = values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(ids), int(lengths[0]))
    elif prob_cols:
        probs = np.stack([cols[c][0] for c in prob_cols], axis=1)
    return _Columns(ids, cols["label"][0], cols["prediction"][0], cols["label"][1], cols["prediction"][1], probs,
                    _row)


def _read_csv(path: Path, where: str) -> _Columns:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise SeedlabError(f"{where}: is empty (needs a header: {_VALID_PRED_COLUMNS})") from None
        prob_cols = _check_column_names(where, header, list_probs_ok=False)
        index = {name: i for i, name in enumerate(header)}
        records = []
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) != len(header):
                raise SeedlabError(f"{where} line {reader.line_num}: has {len(fields)} fields where the header has "
                                   f"{len(header)}")
            records.append((reader.line_num, fields))
    if not records:
        raise SeedlabError(f"{where}: has no rows")

    def column(name):
        return [fields[index[name]].strip() for _, fields in records]

    def parse(name):
        parsed, is_float = [], False
        for (line, _), text in zip(records, column(name)):
            try:
                parsed.append(int(text))
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    what = "empty" if not text else f"not a number ({text!r})"
                    raise SeedlabError(f"{where} line {line}: {name} is {what}") from None
                if not math.isfinite(value):
                    raise SeedlabError(f"{where} line {line}: {name} is {text} (must be finite)")
                parsed.append(value)
                is_float = True
        return np.asarray(parsed, dtype=np.float64), is_float

    ids = _ids(where, column("instance_id"), lambda i: f"line {records[i][0]}")
    label, label_float = parse("label")
    prediction, prediction_float = parse("prediction")
    probs = np.stack([parse(c)[0] for c in prob_cols], axis=1) if prob_cols else None
    return _Columns(ids, label, prediction, label_float, prediction_float, probs, lambda i: f"line {records[i][0]}")


def _read_jsonl(path: Path, where: str) -> _Columns:
    records, lines, names = [], [], None
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SeedlabError(f"{where} line {line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise SeedlabError(f"{where} line {line_no}: is not a JSON object")
            if names is None:
                names = list(record)
                prob_cols = _check_column_names(where, names, list_probs_ok=True)
            elif set(record) != set(names):
                diff = sorted(set(record) ^ set(names))
                raise SeedlabError(f"{where} line {line_no}: keys differ from line 1's (differing: {diff})")
            records.append(record)
            lines.append(line_no)
    if not records:
        raise SeedlabError(f"{where}: has no rows")

    def loc(i):
        return f"line {lines[i]}"

    ids = _ids(where, [r["instance_id"] for r in records], loc)
    label, label_float = _numeric(where, "label", [r["label"] for r in records], loc)
    prediction, prediction_float = _numeric(where, "prediction", [r["prediction"] for r in records], loc)
    probs = None
    if "probs" in names:
        width = len(records[0]["probs"]) if isinstance(records[0]["probs"], list) else 0
        for i, r in enumerate(records):
            if not isinstance(r["probs"], list) or not r["probs"] or len(r["probs"]) != width:
                raise SeedlabError(f"{where} {loc(i)}: probs is not a non-empty list of {width or 'C'} numbers "
                                   f"(the length on the first line)")
        probs = np.stack([_numeric(where, "probs", r["probs"], lambda _, i=i: loc(i))[0]
                          for i, r in enumerate(records)])
    elif prob_cols:
        probs = np.stack([_numeric(where, c, [r[c] for r in records], loc)[0] for c in prob_cols], axis=1)
    return _Columns(ids, label, prediction, label_float, prediction_float, probs, loc)


def _build_generic_runs(rows: list[dict], files: dict[str, Path], columns: dict[str, _Columns]) -> list[ImportedRun]:
    from seedlab.data.tasks import TASKS

    runs = []
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        spec = TASKS.get(task)
        cols = [columns[r["run"]] for r in task_rows]
        names = [files[r["run"]].name for r in task_rows]
        if spec is not None:
            regression = spec.is_regression
        else:  # unknown task: regression when a run has no probs and stores label or prediction as floats
            kinds = {c.probs is None and (c.label_is_float or c.prediction_is_float) for c in cols}
            if len(kinds) > 1:
                raise SeedlabError(f"runs of task {task!r} mix classification (integer labels/predictions or probs) "
                                   f"and regression (float values, no probs): e.g. {names[0]} vs {names[1]}")
            regression = kinds.pop()
        for name, c in zip(names, cols):
            _check_values(task, name, c, regression, spec)
        ref_name, ref = names[0], cols[0]
        ref_pos = {iid: i for i, iid in enumerate(ref.ids)}
        for name, c in zip(names[1:], cols[1:]):
            if len(c.ids) != len(ref.ids) or any(i not in ref_pos for i in c.ids):
                only = sorted(set(c.ids) - set(ref.ids))[:3]
                lacking = sorted(set(ref.ids) - set(c.ids))[:3]
                raise SeedlabError(f"runs of task {task!r} do not share instance ids: {name} has {len(c.ids)}, "
                                   f"{ref_name} has {len(ref.ids)} (only in {name}: {only}; missing from it: "
                                   f"{lacking}); every run of a task must predict the same instances")
            order = np.fromiter((ref_pos[i] for i in c.ids), dtype=np.int64, count=len(c.ids))
            differs = np.flatnonzero(c.label != ref.label[order])
            if len(differs):
                iid = c.ids[int(differs[0])]
                raise SeedlabError(f"runs of task {task!r} disagree on labels: {name} and {ref_name} differ at "
                                   f"{len(differs)} instance(s), e.g. {iid!r}")
        for row, name, c in zip(task_rows, names, cols):
            run = ImportedRun(
                source_run=row["run"], source_file=name, task=task, model=row["model"],
                pretrain_seed=row["pretrain_seed"], finetune_seed=row["finetune_seed"], method=row["method"],
                instance_ids=np.asarray(c.ids, dtype=str),
                labels=c.label.astype(np.float32 if regression else np.int64),
                predictions=c.prediction.astype(np.float32 if regression else np.int64),
                probs=None if c.probs is None else c.probs.astype(np.float32),
            )
            run.metrics = _score_run(run, name)
            runs.append(run)
    return runs


def _check_values(task: str, where: str, c: _Columns, regression: bool, spec) -> None:
    if regression:
        if c.probs is not None:
            raise SeedlabError(f"{where}: task {task!r} is a regression task; probs columns are not allowed")
        return
    for name, arr in (("label", c.label), ("prediction", c.prediction)):
        bad = np.flatnonzero(arr != np.round(arr))
        if len(bad):
            raise SeedlabError(f"{where} {c.loc(int(bad[0]))}: {name} is {arr[bad[0]]}; task {task!r} is a "
                               f"classification task and needs integer class ids")
    num_classes = spec.num_labels if spec is not None else (None if c.probs is None else c.probs.shape[1])
    if c.probs is not None and num_classes is not None and c.probs.shape[1] != num_classes:
        raise SeedlabError(f"{where}: probs have {c.probs.shape[1]} columns; task {task!r} has {num_classes} "
                           f"classes ({', '.join(spec.labels)})")
    for name, arr in (("label", c.label), ("prediction", c.prediction)):
        bad = np.flatnonzero((arr < 0) | ((arr >= num_classes) if num_classes is not None else False))
        if len(bad):
            valid = f"0..{num_classes - 1}" if num_classes is not None else "integers >= 0"
            names = f" = {', '.join(spec.labels)}" if spec is not None else ""
            raise SeedlabError(f"{where} {c.loc(int(bad[0]))}: {name} is {int(arr[bad[0]])} (valid class ids for "
                               f"task {task!r}: {valid}{names})")
    if c.probs is not None:
        if np.any(c.probs < 0):
            row = int(np.flatnonzero(np.any(c.probs < 0, axis=1))[0])
            raise SeedlabError(f"{where} {c.loc(row)}: probs are negative; give probabilities (softmax of logits)")
        sums = c.probs.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1.0) > PROB_SUM_TOLERANCE)
        if len(off):
            raise SeedlabError(f"{where} {c.loc(int(off[0]))}: probs sum to {sums[off[0]]:.4g}, not 1 (within "
                               f"{PROB_SUM_TOLERANCE}); give probabilities (softmax of logits), not logits")


def _score_run(run: ImportedRun, where: str) -> dict:
    from seedlab.stats.metrics import score
    from seedlab.data.tasks import TASKS

    if run.task in TASKS:
        names = TASKS[run.task].metrics
    else:  # the rule seedlab.analysis.analyze.task_metrics applies to tasks it does not know
        names = ("pearson", "spearman") if run.is_regression else ("accuracy",)
    try:
        return {f"eval_{name}": float(score(name, run.labels, run.predictions)) for name in names}
    except ValueError as exc:
        raise SeedlabError(f"{where}: cannot score {run.task!r}: {exc}") from None


def _probs_notes(runs: list[ImportedRun]) -> list[str]:
    notes = []
    for task in dict.fromkeys(r.task for r in runs):
        with_probs = [r for r in runs if r.task == task and r.probs is not None]
        total = sum(r.task == task for r in runs)
        if 0 < len(with_probs) < total:
            notes.append(f"task {task!r}: only {len(with_probs)} of {total} runs have probs; the analysis uses probs "
                         f"only when every run of a task has them")
    return notes


# --------------------------------------------------------------------------------------------------
# Zhou et al. 2020 layout
# --------------------------------------------------------------------------------------------------


def read_zhou2020(folder, data_dir=None) -> ImportPlan:
    """Zhou et al. 2020's seed_<k>/<set>/ files, scored against gold labels from `data_dir` (default: the local
    data dir). Sets without gold labels are skipped and named in the plan's notes."""
    from seedlab.data.paths import local_data_dir

    folder = Path(folder).resolve()
    seed_dirs = sorted((p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"seed_\d+", p.name)),
                       key=lambda p: int(p.name[5:]))
    if not seed_dirs:
        raise SeedlabError(f"{folder}: no seed_<k> folders (the zhou2020 layout is seed_<k>/<set>/pred_results.txt)")
    data_dir = Path(data_dir) if data_dir is not None else local_data_dir()
    if data_dir is None:
        raise SeedlabError("no local data dir for the gold labels (set $SEEDLAB_DATA to a folder with "
                           "glue/MNLI/dev_matched.tsv)")
    if not (seed_dirs[0] / "mnli").is_dir():
        raise SeedlabError(f"{seed_dirs[0].relative_to(folder)}: has no mnli/ folder (zhou2020 layout: "
                           f"seed_<k>/mnli/pred_results.txt)")
    sets = sorted({p.name for d in seed_dirs for p in d.iterdir() if p.is_dir()})
    notes, golds = [], {}
    for name in sets:
        if name not in ZHOU_GOLD:
            continue
        task, rel, prefix = ZHOU_GOLD[name]
        gold_path = data_dir / rel
        if gold_path.is_file():
            golds[name] = (task, _read_mnli_gold(gold_path, prefix))
        elif name == "mnli":
            raise SeedlabError(f"gold labels {gold_path} not found (needed for the mnli set; valid data dir: one with "
                               f"{rel})")
        else:
            notes.append(f"set {name!r} skipped: no gold labels ({rel} is not in {data_dir})")
    no_gold = [s for s in sets if s not in ZHOU_GOLD]
    if no_gold:
        notes.append(f"sets skipped, their gold labels are not in this snapshot: {', '.join(no_gold)}")
    runs = []
    for name, (task, (ids, labels)) in golds.items():
        for seed_dir in seed_dirs:
            runs.append(_read_zhou_run(folder, seed_dir, name, task, ids, labels))
    return ImportPlan("zhou2020", str(folder), folder.name, f"import:{ZHOU_SOURCE}", f"import-{ZHOU_SOURCE}", runs,
                      notes)


def _read_mnli_gold(path: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(instance ids `<prefix>-{index:06d}`, labels in seedlab's MNLI order) of an MNLI tsv with index and
    gold_label columns. The index must be the row position, so the ids equal those seedlab.data.tasks assigns."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        if "index" not in header or "gold_label" not in header:
            raise SeedlabError(f"{path}: missing column(s) {[c for c in ('index', 'gold_label') if c not in header]} "
                               f"(needs index and gold_label)")
        i_index, i_gold = header.index("index"), header.index("gold_label")
        ids, labels = [], []
        for position, fields in enumerate(reader):
            where = f"{path} line {reader.line_num}"
            if len(fields) != len(header):
                raise SeedlabError(f"{where}: has {len(fields)} fields where the header has {len(header)}")
            if fields[i_index].strip() != str(position):
                raise SeedlabError(f"{where}: index {fields[i_index]!r} is not the row position {position} "
                                   f"(instance ids must stay dev-{{index:06d}} as in seedlab.data.tasks)")
            gold = fields[i_gold].strip()
            if gold not in MNLI_LABELS:
                raise SeedlabError(f"{where}: gold_label {gold!r} is not one of {', '.join(MNLI_LABELS)}")
            ids.append(f"{prefix}-{position:06d}")
            labels.append(MNLI_LABELS.index(gold))
    if not ids:
        raise SeedlabError(f"{path}: has no rows")
    return np.asarray(ids, dtype=str), np.asarray(labels, dtype=np.int64)


def _load_json_list(path: Path, folder: Path) -> list:
    rel = path.relative_to(folder)
    if not path.is_file():
        raise SeedlabError(f"{rel}: missing (zhou2020 layout: seed_<k>/<set>/pred_results.txt, logits_results.txt, "
                           f"eval_results.txt)")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SeedlabError(f"{rel}: not valid JSON ({exc})") from None
    if not isinstance(value, list):
        raise SeedlabError(f"{rel}: is not a JSON list")
    return value


def _read_zhou_run(folder: Path, seed_dir: Path, name: str, task: str, ids: np.ndarray,
                   labels: np.ndarray) -> ImportedRun:
    from seedlab.stats.metrics import accuracy

    set_dir = seed_dir / name
    rel = set_dir.relative_to(folder)
    n = len(ids)
    remap = np.array([MNLI_LABELS.index(label) for label in ZHOU_LABELS])  # their id -> ours
    columns = [ZHOU_LABELS.index(label) for label in MNLI_LABELS]  # our column j = their column columns[j]
    raw = _load_json_list(set_dir / "pred_results.txt", folder)
    if len(raw) != n or not all(type(p) is int and 0 <= p < len(ZHOU_LABELS) for p in raw):
        raise SeedlabError(f"{rel}/pred_results.txt: needs {n} label ids in 0..{len(ZHOU_LABELS) - 1} (one per row of "
                           f"the gold file), has {len(raw)} entries")
    theirs = np.asarray(raw, dtype=np.int64)
    probs = None
    if (set_dir / "logits_results.txt").exists():
        logits = _load_json_list(set_dir / "logits_results.txt", folder)
        try:
            logits = np.asarray(logits, dtype=np.float64)
        except (ValueError, TypeError):
            logits = np.empty((0,))
        if logits.shape != (n, len(ZHOU_LABELS)) or not np.all(np.isfinite(logits)):
            raise SeedlabError(f"{rel}/logits_results.txt: needs {n} lists of {len(ZHOU_LABELS)} finite numbers")
        disagree = np.flatnonzero(logits.argmax(axis=1) != theirs)
        if len(disagree):
            raise SeedlabError(f"{rel}: argmax of logits_results.txt disagrees with pred_results.txt at "
                               f"{len(disagree)} row(s) (first: row {int(disagree[0])})")
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)[:, columns]
    predictions = remap[theirs]
    acc = accuracy(labels, predictions)
    reported = _reported_accuracy(set_dir / "eval_results.txt", folder, name)
    if abs(acc - float(reported)) >= ACCURACY_TOLERANCE:
        raise SeedlabError(f"{rel}: accuracy against the gold labels is {acc!r} but eval_results.txt reports "
                           f"{reported} (gold file or label order does not match)")
    k = int(seed_dir.name[5:])
    run = ImportedRun(
        source_run=f"{seed_dir.name}/{name}", source_file=str(rel / "pred_results.txt"), task=task, model=ZHOU_MODEL,
        pretrain_seed=ZHOU_PRETRAIN_SEED, finetune_seed=k, method="standard", instance_ids=ids, labels=labels,
        predictions=predictions, probs=probs,
        extra_params={"source_label_order": ",".join(ZHOU_LABELS), "reported_accuracy": reported},
    )
    run.metrics = {"eval_accuracy": acc}
    return run


def _reported_accuracy(path: Path, folder: Path, name: str) -> str:
    rel = path.relative_to(folder)
    if not path.is_file():
        raise SeedlabError(f"{rel}: missing (zhou2020 layout: seed_<k>/<set>/eval_results.txt)")
    text = path.read_text().strip()
    match = re.fullmatch(rf"acc_{re.escape(name)}\s*=\s*([0-9.eE+-]+)", text)
    try:
        if match and 0.0 <= float(match.group(1)) <= 1.0:
            return match.group(1)
    except ValueError:
        pass
    raise SeedlabError(f"{rel}: expected one line 'acc_{name} = <accuracy in 0..1>', got {text[:60]!r}")


# --------------------------------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------------------------------


def import_predictions(folder, experiment: str | None = None, tracking_uri: str | None = None, fmt: str = "auto",
                       dry_run: bool = False, data_dir=None) -> ImportResult:
    """Validate `folder` completely, then log its runs (nothing is written unless all of it validates)."""
    plan = read_folder(folder, fmt, data_dir)
    return import_plan(plan, experiment, tracking_uri, dry_run)


def import_plan(plan: ImportPlan, experiment: str | None = None, tracking_uri: str | None = None,
                dry_run: bool = False) -> ImportResult:
    """Log a validated plan: runs already imported (same trial key and content) are skipped; the rest become
    FINISHED trial runs under a new parent run. Checks against the store happen before anything is written."""
    from seedlab.store.contract import client, resolve_tracking_uri

    experiment = experiment or plan.default_experiment
    uri = resolve_tracking_uri(tracking_uri)
    store = client(uri)
    found = store.get_experiment_by_name(experiment)
    if found is not None and found.lifecycle_stage != "active":
        raise SeedlabError(f"experiment {experiment!r} is deleted; restore it or choose another --experiment")
    experiment_id = found.experiment_id if found is not None else None
    todo, skipped = _compare_with_store(store, experiment_id, experiment, plan)
    result = ImportResult(plan.format, plan.source, experiment, experiment_id, uri, None, [], skipped,
                          list(plan.notes), dry_run, plan.runs)
    if dry_run:
        result.imported = [(r.run_name, "") for r in todo]
        return result
    if todo:
        result.experiment_id, result.parent_run_id, result.imported = _log(store, uri, experiment, plan, todo)
    return result


def _existing_trials(store, experiment_id: str) -> list:
    from seedlab.store.contract import KIND_TRIAL, find_runs

    return find_runs(store, [experiment_id], KIND_TRIAL)


def _compare_with_store(store, experiment_id, experiment: str, plan: ImportPlan) -> tuple[list, list]:
    """(runs to log, names of runs to skip); errors for changed re-imports, taken cells, mismatched instances."""
    from seedlab.store.contract import TAG_TRIAL_KEY

    if experiment_id is None:
        return list(plan.runs), []
    existing = _existing_trials(store, experiment_id)
    by_key = {r.data.tags.get(TAG_TRIAL_KEY): r for r in existing}
    by_cell = {}
    for r in existing:
        p = r.data.params
        try:
            cell = (p["task"], p["model"], p.get("method", "standard"), int(p["pretrain_seed"]),
                    int(p["finetune_seed"]))
        except (KeyError, ValueError):
            continue
        by_cell.setdefault(cell, r)
    todo, skipped = [], []
    for run in plan.runs:
        key = import_trial_key(plan.source_id, run.source_run)
        if key in by_key:
            previous = by_key[key]
            if previous.data.tags.get(TAG_IMPORT_DIGEST) != run.digest():
                raise SeedlabError(f"{run.source_file}: run {run.source_run!r} was imported into experiment "
                                   f"{experiment!r} before with different content (run {previous.info.run_id}); "
                                   f"delete that run or import into another experiment")
            skipped.append(run.run_name)
            continue
        if run.cell in by_cell:
            other = by_cell[run.cell]
            raise SeedlabError(f"{run.source_file}: experiment {experiment!r} already has a run of this cell "
                               f"({run.run_name}: run {other.info.run_id}, from "
                               f"{other.data.tags.get(TAG_SOURCE, 'a sweep')}); import into another experiment")
        todo.append(run)
    _check_store_instances(store, experiment, existing, todo)
    return todo, skipped


def _check_store_instances(store, experiment: str, existing: list, todo: list[ImportedRun]) -> None:
    """New runs of a task must predict the same instances, with the same labels, as the runs already there."""
    from seedlab.store.predictions import read_predictions
    from seedlab.data.tasks import EVAL_SPLIT

    for task in dict.fromkeys(r.task for r in todo):
        others = [r for r in existing if r.data.params.get("task") == task]
        if not others:
            continue
        ref = others[0]
        with tempfile.TemporaryDirectory(prefix="seedlab-import-") as tmp:
            try:
                local = store.download_artifacts(ref.info.run_id, f"predictions/{EVAL_SPLIT}.parquet", tmp)
            except Exception:  # noqa: BLE001 - the loader would fail on it the same way
                raise SeedlabError(f"experiment {experiment!r}: run {ref.info.run_id} of task {task!r} has no "
                                   f"predictions/{EVAL_SPLIT}.parquet artifact") from None
            stored = read_predictions(local, source=f"run {ref.info.run_id}")
        run = next(r for r in todo if r.task == task)
        position = {iid: i for i, iid in enumerate(stored.instance_ids)}
        if len(run.instance_ids) != len(position) or any(i not in position for i in run.instance_ids):
            raise SeedlabError(f"{run.source_file}: task {task!r} in experiment {experiment!r} has runs on other "
                               f"instances ({len(position)} in run {ref.info.run_id} vs {len(run.instance_ids)} here); "
                               f"import into another experiment or rename the task")
        order = np.fromiter((position[i] for i in run.instance_ids), dtype=np.int64, count=len(run.instance_ids))
        if not np.array_equal(stored.labels[order], run.labels):
            raise SeedlabError(f"{run.source_file}: task {task!r} in experiment {experiment!r} has other labels for "
                               f"the same instances (run {ref.info.run_id}); check the label convention")


def _log(store, uri: str, experiment: str, plan: ImportPlan, todo: list[ImportedRun]):
    from mlflow.entities import Param

    from seedlab import __version__
    from seedlab.store.predictions import write_predictions
    from seedlab.data.tasks import EVAL_SPLIT
    from seedlab.store.contract import (KIND_IMPORT, KIND_TRIAL, PREDICTIONS_DIR, TAG_GIT, TAG_KIND, TAG_SWEEP,
                                        TAG_TRIAL_KEY, TAG_VERSION, get_or_create_experiment, git_commit,
                                        import_run_name, log_run, retry)

    experiment_id = get_or_create_experiment(store, experiment, uri)
    commit = git_commit()
    common = {TAG_SWEEP: plan.sweep, TAG_SOURCE: plan.source, TAG_IMPORT_FORMAT: plan.format, TAG_GIT: commit,
              TAG_VERSION: __version__}
    parent = retry(store.create_run, experiment_id, run_name=import_run_name(plan.source_id),
                   tags={**common, TAG_KIND: KIND_IMPORT}).info.run_id
    imported = []
    try:
        params = {"format": plan.format, "source": plan.source, "runs_in_source": len(plan.runs),
                  "runs_imported": len(todo), "notes": " | ".join(plan.notes)[:500]}
        retry(store.log_batch, parent, params=[Param(k, str(v)) for k, v in params.items()])
        with tempfile.TemporaryDirectory(prefix="seedlab-import-") as tmp:
            for i, run in enumerate(todo):
                path = write_predictions(Path(tmp) / str(i) / f"{EVAL_SPLIT}.parquet", run.instance_ids, run.labels,
                                         run.predictions, run.probs)
                params = {"task": run.task, "model": run.model, "pretrain_seed": run.pretrain_seed,
                          "finetune_seed": run.finetune_seed, "method": run.method, "num_eval": len(run.instance_ids),
                          "source_format": plan.format, "source_run": run.source_run, "source_file": run.source_file,
                          **run.extra_params}
                tags = {**common, TAG_KIND: KIND_TRIAL, TAG_TRIAL_KEY: import_trial_key(plan.source_id, run.source_run),
                        TAG_SOURCE_RUN: run.source_run, TAG_IMPORT_DIGEST: run.digest()}
                metrics = [(k, v, 0) for k, v in run.metrics.items()]
                run_id = log_run(store, experiment_id, run.run_name, params, metrics, tags, {PREDICTIONS_DIR: str(path)},
                                 parent_run_id=parent)
                imported.append((run.run_name, run_id))
        retry(store.set_terminated, parent, "FINISHED")
    except BaseException:
        try:
            store.set_terminated(parent, "FAILED")
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        raise
    return experiment_id, parent, imported


def format_result(result: ImportResult) -> str:
    """The CLI's report of an import (or a dry run)."""
    verb = "would import" if result.dry_run else "imported"
    lines = [f"{result.format} import of {result.source}",
             f"experiment {result.experiment!r} at {result.tracking_uri}: {len(result.runs)} runs in the source, "
             f"{len(result.skipped)} already imported, {len(result.imported)} {verb}"
             + (f" (parent run {result.parent_run_id})" if result.parent_run_id else "")]
    new = {name for name, _ in result.imported}
    for run in result.runs:
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in run.metrics.items())
        state = verb if run.run_name in new else "skipped"
        lines.append(f"  {run.run_name:<40} {run.source_run:<24} n={len(run.instance_ids):<7} {metrics}  [{state}]")
    lines += [f"note: {n}" for n in result.notes]
    if result.imported and not result.dry_run:
        lines.append(f"analyze with: seedlab analyze --experiment {result.experiment}"
                     + (f" --tracking-uri {result.tracking_uri}" if result.tracking_uri else ""))
    return "\n".join(lines)
