"""The task registry: GLUE and SuperGLUE tasks as (train, eval) `datasets.Dataset` pairs.

Every loaded split has the same columns: `instance_id` (string, stable across runs), `text_a`, `text_b`
(may be empty) and `label` (int class id, or float for regression). Data comes from the local data
directory (`seedlab.data.paths.local_data_dir`) when it has the task, else from the Hugging Face hub.

Tasks with only one labelled split available offline (QNLI, MNLI, BoolQ) are split deterministically by
a hash of each instance id: `sha256(instance_id) mod 100 < 20` goes to eval, the rest to train. The rule
depends on the id alone, so it never changes with file order, and no instance is ever in both splits.

Hub-only tasks (QQP; SuperGLUE MultiRC, WiC, WSC and RTE) load through their hub names. A copy of a hub dataset
repository in its own layout under `<data dir>/hub/<hub name>` (e.g. `hub/aps/super_glue`, as
`huggingface-cli download aps/super_glue --repo-type dataset --local-dir ...` makes it) is read in its place.

MultiRC is answer-option classification: each instance is one (paragraph, question, answer) with a true/false
label, and its instance id `<split>-<paragraph>-<question>-<answer>` carries the question
(`instance_groups`), which its exact-match metric needs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seedlab.errors import SeedlabError, choice_error
from seedlab.data.paths import local_data_dir

EVAL_SPLIT = "validation"  # the split name used in artifact paths: predictions/validation.parquet
HASH_EVAL_PERCENT = 20


@dataclass(frozen=True)
class TaskSpec:
    name: str
    hub_path: str  # e.g. "nyu-mll/glue"
    hub_config: str  # e.g. "sst2"
    hub_eval_split: str
    labels: tuple[str, ...] | None  # class names in id order; None for regression
    metrics: tuple[str, ...]  # first one is the headline metric
    local_dir: str | None  # relative to the data dir; None: hub only
    local_train: str | None  # file name, or None when the task must be hash-split
    local_eval: str | None
    text_columns: tuple[str, str | None] = ("sentence", None)  # (text_a, text_b) source columns
    label_column: str = "label"
    read_options: dict = field(default_factory=dict)  # pandas read_csv options for TSV files
    grouped: bool = False  # instances are answer options of questions: the id without its last part is the question

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)


_TSV = {"sep": "\t", "quoting": 3, "keep_default_na": False}

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("sst2", "nyu-mll/glue", "sst2", "validation", ("negative", "positive"), ("accuracy",),
                 "glue/SST-2", "train.tsv", "dev.tsv", read_options=_TSV),
        TaskSpec("cola", "nyu-mll/glue", "cola", "validation", ("unacceptable", "acceptable"), ("mcc", "accuracy"),
                 "glue/CoLA", "train.tsv", "dev.tsv",
                 read_options={**_TSV, "header": None, "column_names": ["source", "label", "orig", "sentence"]}),
        TaskSpec("mrpc", "nyu-mll/glue", "mrpc", "validation", ("not_equivalent", "equivalent"), ("accuracy", "f1"),
                 "glue/MRPC", "train.tsv", "dev.tsv", text_columns=("#1 String", "#2 String"),
                 label_column="Quality", read_options={**_TSV, "encoding": "utf-8-sig"}),
        TaskSpec("rte", "nyu-mll/glue", "rte", "validation", ("entailment", "not_entailment"), ("accuracy",),
                 "glue/RTE", "train.tsv", "dev.tsv", text_columns=("sentence1", "sentence2"), read_options=_TSV),
        TaskSpec("qnli", "nyu-mll/glue", "qnli", "validation", ("entailment", "not_entailment"), ("accuracy",),
                 "glue/QNLI", None, "dev.tsv", text_columns=("question", "sentence"), read_options=_TSV),
        TaskSpec("mnli", "nyu-mll/glue", "mnli", "validation_matched", ("entailment", "neutral", "contradiction"),
                 ("accuracy",), "glue/MNLI", None, "dev_matched.tsv", text_columns=("sentence1", "sentence2"),
                 label_column="gold_label", read_options=_TSV),
        TaskSpec("stsb", "nyu-mll/glue", "stsb", "validation", None, ("pearson", "spearman"),
                 "glue/STS-B", "train.tsv", "dev.tsv", text_columns=("sentence1", "sentence2"),
                 label_column="score", read_options=_TSV),
        TaskSpec("qqp", "nyu-mll/glue", "qqp", "validation", ("not_duplicate", "duplicate"), ("accuracy", "f1"),
                 None, None, None, text_columns=("question1", "question2")),
        TaskSpec("boolq", "aps/super_glue", "boolq", "validation", ("false", "true"), ("accuracy",),
                 "superglue/BoolQ", None, "val.jsonl", text_columns=("question", "passage")),
        TaskSpec("cb", "aps/super_glue", "cb", "validation", ("entailment", "contradiction", "neutral"),
                 ("accuracy", "f1_macro"), "superglue/CB", "train.jsonl", "val.jsonl",
                 text_columns=("premise", "hypothesis")),
        # COPA as sentence-pair classification: text_a = premise + question, text_b = both choices;
        # label 0 = choice1, 1 = choice2.
        TaskSpec("copa", "aps/super_glue", "copa", "validation", ("choice1", "choice2"), ("accuracy",),
                 "superglue/COPA", "train.jsonl", "val.jsonl", text_columns=("premise", "choices")),
        # MultiRC: text_a = paragraph, text_b = question + candidate answer; f1 is SuperGLUE's F1a (binary F1 over
        # all answer options), exact_match the share of questions with every option right.
        TaskSpec("multirc", "aps/super_glue", "multirc", "validation", ("false", "true"), ("f1", "exact_match"),
                 None, None, None, text_columns=("paragraph", "question"), grouped=True),
        # WiC: text_a = "<word>: <sentence1>", text_b = sentence2; true = the word has the same sense in both.
        TaskSpec("wic", "aps/super_glue", "wic", "validation", ("false", "true"), ("accuracy",),
                 None, None, None, text_columns=("sentence1", "sentence2")),
        # WSC (the "wsc.fixed" config: corrected span indices): text_a = text, text_b = a question whether the
        # pronoun (span2) refers to the noun phrase (span1); true = it does.
        TaskSpec("wsc", "aps/super_glue", "wsc.fixed", "validation", ("false", "true"), ("accuracy",),
                 None, None, None, text_columns=("text", "span1_text")),
        # SuperGLUE's RTE (the same data as GLUE's RTE, from the SuperGLUE release)
        TaskSpec("rte_sg", "aps/super_glue", "rte", "validation", ("entailment", "not_entailment"), ("accuracy",),
                 None, None, None, text_columns=("premise", "hypothesis")),
    ]
}

# text_a, text_b of the tasks whose inputs are built from several columns
_FORMATS = {
    "copa": lambda row: (f"{row['premise']} What was the {row['question']}?", f"{row['choice1']} {row['choice2']}"),
    "multirc": lambda row: (str(row["paragraph"]), f"{row['question']} {row['answer']}"),
    "wic": lambda row: (f"{row['word']}: {row['sentence1']}", str(row["sentence2"])),
    "wsc": lambda row: (str(row["text"]), f'Does "{row["span2_text"]}" refer to "{row["span1_text"]}"?'),
}


def instance_groups(task: str, instance_ids) -> np.ndarray | None:
    """The group (MultiRC: the question) of each instance of a grouped task, from its instance id; None for the
    other tasks.

    Parameters
    ----------
    task : str
        A task name of `TASKS`.
    instance_ids : array-like of str
        Instance ids as the loader made them (`<split>-<paragraph>-<question>-<answer>` for MultiRC).

    Returns
    -------
    ndarray of str, shape (m,), or None
    """
    if not get_task(task).grouped:
        return None
    return np.asarray([str(i).rsplit("-", 1)[0] for i in instance_ids])


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise choice_error("task", name, sorted(TASKS)) from None


def hash_split_is_eval(instance_id: str) -> bool:
    """The documented deterministic train/eval rule for single-split tasks."""
    digest = hashlib.sha256(instance_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < HASH_EVAL_PERCENT


def _normalise(spec: TaskSpec, ds, id_prefix: str):
    """Map a raw split to the common columns (instance_id, text_a, text_b, label)."""
    label_ids = {name: i for i, name in enumerate(spec.labels)} if spec.labels else None
    col_a, col_b = spec.text_columns

    def convert(row, index):
        if spec.name in _FORMATS:
            text_a, text_b = _FORMATS[spec.name](row)
        else:
            text_a = str(row[col_a])
            text_b = "" if col_b is None else str(row[col_b])
        raw = row[spec.label_column]
        if label_ids is None:
            label = float(raw)
        elif isinstance(raw, bool):
            label = int(raw)
        elif isinstance(raw, str) and not raw.lstrip("-").isdigit():
            label = label_ids[raw]
        else:
            label = int(raw)
        ident = row.get("idx", index)
        if isinstance(ident, dict):  # MultiRC: {paragraph, question, answer}, the question id kept for its metric
            instance_id = f"{id_prefix}-{int(ident['paragraph']):05d}-{int(ident['question']):05d}-{int(ident['answer']):06d}"
        else:
            instance_id = f"{id_prefix}-{int(ident):06d}"
        return {"instance_id": instance_id, "text_a": text_a, "text_b": text_b, "label": label}

    import datasets

    datasets.disable_progress_bars()  # one bar per map in every trial's log is noise
    features = datasets.Features(
        instance_id=datasets.Value("string"),
        text_a=datasets.Value("string"),
        text_b=datasets.Value("string"),
        label=datasets.Value("float32" if spec.is_regression else "int64"),
    )
    return ds.map(convert, with_indices=True, remove_columns=ds.column_names, features=features,
                  load_from_cache_file=False)


def holdout_split(train, fraction: float):
    """(rest, held-out) parts of a training split, for choosing hyperparameters without touching the
    evaluation split: `sha256("holdout:" + instance_id) mod 10000 < fraction * 10000` is held out."""
    if not 0 < fraction < 1:
        raise SeedlabError(f"invalid holdout fraction {fraction!r} (valid: a number in (0, 1), e.g. 0.2)")

    def held(instance_id: str) -> bool:
        digest = hashlib.sha256(f"holdout:{instance_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % 10000 < fraction * 10000

    mask = np.array([held(i) for i in list(train["instance_id"])])
    return train.select(np.flatnonzero(~mask)), train.select(np.flatnonzero(mask))


def _read_local(spec: TaskSpec, directory: Path, filename: str):
    import datasets

    path = str(directory / filename)
    if filename.endswith(".jsonl"):
        return datasets.load_dataset("json", data_files={"data": path}, split="data")
    return datasets.load_dataset("csv", data_files={"data": path}, split="data", **spec.read_options)


def _subsample(ds, limit: int | None, data_seed: int):
    """The same subset for every run: it depends on `data_seed` (fixed per sweep), not on the trial's seeds."""
    if limit is None or limit >= len(ds):
        return ds
    order = np.random.default_rng(data_seed).permutation(len(ds))[:limit]
    return ds.select(np.sort(order))


SPLITS_FORMAT = 1  # of the cached normalised splits: bump when `_normalise` or the split rules change


def task_origin(name: str, source: str = "auto") -> dict:
    """Where `load_task(name, source=source)` reads from, as a cache key part: the local files (path, size,
    modification time) or the hub dataset. Cheap: stats files, imports nothing."""
    spec = get_task(name)
    data_dir = local_data_dir()
    local = data_dir / spec.local_dir if (data_dir and spec.local_dir) else None
    if source not in ("auto", "local", "hub"):
        raise choice_error("data source", source, ["auto", "local", "hub"])
    use_local = source == "local" or (source == "auto" and local is not None and local.is_dir())
    if use_local:
        if local is None or not local.is_dir():
            raise SeedlabError(f"task {name!r} has no local data (looked in {data_dir}); use source='hub'")
        files = []
        for filename in filter(None, (spec.local_train, spec.local_eval)):
            path = local / filename
            if not path.is_file():
                raise SeedlabError(f"task {name!r}: {path} is missing from the local data dir")
            stat = path.stat()
            files.append({"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
        return {"task": name, "source": "local", "dir": str(local), "files": files}
    if os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise SeedlabError(f"task {name!r} is not in the local data dir and HF_DATASETS_OFFLINE=1")
    snapshot = hub_snapshot(spec)  # a local copy of the hub repository is read in its place
    return {"task": name, "source": "hub", "dataset": f"{spec.hub_path}/{spec.hub_config}",
            "snapshot": str(snapshot) if snapshot else None}


def load_task(
    name: str, max_train: int | None = None, max_eval: int | None = None, data_seed: int = 0, source: str = "auto"
):
    """Return (train, eval) datasets for a task. `source`: "auto" (local if present, else hub), "local" or "hub".

    The normalised splits are read and converted once per node: kept in the process and, for local data, on
    disk under the cache dir (parquet, keyed by the files' path, size and modification time:
    `seedlab.data.cache`)."""
    spec = get_task(name)
    origin = task_origin(name, source)
    train, evaluation = _normalised_splits(spec, origin)
    return _subsample(train, max_train, data_seed), _subsample(evaluation, max_eval, data_seed)


def _normalised_splits(spec: TaskSpec, origin: dict):
    """(train, eval) in the common columns, from the process memo, the disk cache, or the source."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    from dataclasses import asdict

    from seedlab.data.cache import cache_key, cached_table

    def both():  # one table, a `split` column telling them apart (a hash-split task reads one file for both)
        if origin["source"] == "local":
            train, evaluation = _load_local(spec, Path(origin["dir"]))
        else:
            train, evaluation = _load_hub(spec)
        tables = [ds.with_format("arrow")[:] for ds in (train, evaluation)]
        tables = [t.append_column("split", pa.array([split] * t.num_rows, pa.string()))
                  for t, split in zip(tables, ("train", "eval"))]
        return pa.concat_tables(tables)

    key = cache_key("task-splits", SPLITS_FORMAT, origin, asdict(spec))
    table = cached_table("tasks", key, both, disk=origin["source"] == "local")
    from datasets.table import InMemoryTable

    return tuple(datasets.Dataset(InMemoryTable(table.filter(pc.equal(table["split"], split)).drop_columns(["split"])))
                 for split in ("train", "eval"))


def _load_local(spec: TaskSpec, directory: Path):
    evaluation = _normalise(spec, _read_local(spec, directory, spec.local_eval), "dev")
    if spec.local_train is not None:
        train = _normalise(spec, _read_local(spec, directory, spec.local_train), "train")
        return train, evaluation
    is_eval = np.array([hash_split_is_eval(i) for i in list(evaluation["instance_id"])])
    return evaluation.select(np.flatnonzero(~is_eval)), evaluation.select(np.flatnonzero(is_eval))


def hub_snapshot(spec: TaskSpec) -> Path | None:
    """A local copy of the task's hub repository, `<data dir>/hub/<hub name>`, when there is one."""
    data_dir = local_data_dir()
    folder = data_dir / "hub" / spec.hub_path if data_dir else None
    return folder if folder is not None and folder.is_dir() else None


def _load_hub(spec: TaskSpec):
    import datasets

    snapshot = hub_snapshot(spec)
    raw = datasets.load_dataset(str(snapshot) if snapshot else spec.hub_path, spec.hub_config)
    return _normalise(spec, raw["train"], "train"), _normalise(spec, raw[spec.hub_eval_split], "dev")
