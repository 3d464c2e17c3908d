"""Which layout a folder has, and reading it into an `ImportPlan` (validation only; no MLflow)."""

from __future__ import annotations

from pathlib import Path

from seedlab.errors import SeedlabError, choice_error
from seedlab.store.importer.generic import RUNS_FILE, read_generic
from seedlab.store.importer.plan import ImportPlan
from seedlab.store.importer.zhou2020 import SEED_DIR, read_zhou2020

FORMATS = ("generic", "zhou2020")
# McCoy et al. 2020, "BERTs of a feather": per-example counts of correct runs, no per-run predictions
MCCOY_FILES = ("mnli_development_set_number_of_correct_responses.txt", "berts_of_a_feather_accuracies_by_run.csv")


def detect_format(folder) -> str:
    """The folder's layout: "generic" (runs.csv) or "zhou2020" (seed_<k>/ folders); else a one-line error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SeedlabError(f"import source {folder} is not a directory")
    if (folder / RUNS_FILE).is_file():
        return "generic"
    if any(p.is_dir() and SEED_DIR.fullmatch(p.name) for p in folder.iterdir()):
        return "zhou2020"
    if any((folder / name).is_file() for name in MCCOY_FILES):
        raise SeedlabError(
            f"{folder} is the McCoy et al. 2020 'BERTs of a feather' layout: it holds per-example counts of correct "
            f"runs (out of 100) and per-run accuracies, not per-run predictions, so it cannot be imported as trial "
            f"runs (see docs/import.md)")
    raise SeedlabError(f"{folder}: unrecognised layout (valid: a folder with {RUNS_FILE} (generic), or "
                       f"seed_<k>/ folders (zhou2020); see docs/import.md)")


def read_folder(folder, fmt: str = "auto", data_dir=None) -> ImportPlan:
    """Validate a folder and return its `ImportPlan`.

    Parameters
    ----------
    folder : path
        The source folder.
    fmt : {"auto", "generic", "zhou2020"}
        Its layout; "auto" detects it (`detect_format`).
    data_dir : path, optional
        zhou2020 only: where the gold labels are (default: `seedlab.data.paths.local_data_dir()`).
    """
    if fmt not in ("auto", *FORMATS):
        raise choice_error("import format", fmt, ["auto", *FORMATS])
    if fmt == "auto":
        fmt = detect_format(folder)
    elif not Path(folder).is_dir():
        raise SeedlabError(f"import source {folder} is not a directory")
    return read_generic(folder) if fmt == "generic" else read_zhou2020(folder, data_dir)
