"""The Zhou et al. 2020 layout (owenzx/InstabilityAnalysis): ``seed_<k>/<set>/pred_results.txt`` (a JSON list
of label ids), ``logits_results.txt`` (a JSON list of 3 logits per row) and ``eval_results.txt``
(``acc_<set> = ...``), scored against gold labels from the data dir -> an `ImportPlan`."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from seedlab.errors import SeedlabError
from seedlab.store.importer.plan import ImportedRun, ImportPlan

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
SEED_DIR = re.compile(r"seed_\d+")  # seed_<k>/: the folders of this layout


def read_zhou2020(folder, data_dir=None) -> ImportPlan:
    """Zhou et al. 2020's seed_<k>/<set>/ files, scored against gold labels from `data_dir` (default: the local
    data dir). Sets without gold labels are skipped and named in the plan's notes."""
    from seedlab.data.paths import local_data_dir

    folder = Path(folder).resolve()
    seed_dirs = sorted((p for p in folder.iterdir() if p.is_dir() and SEED_DIR.fullmatch(p.name)),
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

