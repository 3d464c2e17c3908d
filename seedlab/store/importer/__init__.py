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

One job per module:

* `read`: every prediction file (and runs.csv) -> one pyarrow Table, by pyarrow's readers;
* `validate`: that table's columns and values, then the runs of a task together;
* `generic`, `zhou2020`: a folder of each layout -> `ImportPlan` (`plan`);
* `layout`: which layout a folder has (`detect_format`, `read_folder`);
* `log`: the checks against the store and the logging (`import_plan`, `import_predictions`, `format_result`).
"""

from seedlab.store.importer.generic import RUNS_FILE, RUNS_OPTIONAL, RUNS_REQUIRED, read_generic
from seedlab.store.importer.layout import FORMATS, MCCOY_FILES, detect_format, read_folder
from seedlab.store.importer.log import (TAG_IMPORT_DIGEST, TAG_IMPORT_FORMAT, TAG_SOURCE, TAG_SOURCE_RUN,
                                        ImportResult, format_result, import_plan, import_predictions,
                                        import_trial_key)
from seedlab.store.importer.plan import ImportedRun, ImportPlan
from seedlab.store.importer.read import PRED_SUFFIXES
from seedlab.store.importer.validate import PRED_REQUIRED, PROB_SUM_TOLERANCE
from seedlab.store.importer.zhou2020 import (ACCURACY_TOLERANCE, MNLI_LABELS, ZHOU_GOLD, ZHOU_LABELS, ZHOU_MODEL,
                                             ZHOU_PRETRAIN_SEED, ZHOU_SOURCE, read_zhou2020)

__all__ = [
    "ACCURACY_TOLERANCE", "FORMATS", "MCCOY_FILES", "MNLI_LABELS", "PRED_REQUIRED", "PRED_SUFFIXES",
    "PROB_SUM_TOLERANCE", "RUNS_FILE", "RUNS_OPTIONAL", "RUNS_REQUIRED", "TAG_IMPORT_DIGEST", "TAG_IMPORT_FORMAT",
    "TAG_SOURCE", "TAG_SOURCE_RUN", "ZHOU_GOLD", "ZHOU_LABELS", "ZHOU_MODEL", "ZHOU_PRETRAIN_SEED", "ZHOU_SOURCE",
    "ImportPlan", "ImportResult", "ImportedRun", "detect_format", "format_result", "import_plan",
    "import_predictions", "import_trial_key", "read_folder", "read_generic", "read_zhou2020",
]
