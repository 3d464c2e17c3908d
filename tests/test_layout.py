"""The layout's import rule and the trial-run contract, enforced on the source (README, "Layout").

The analysis side (seedlab.stats, seedlab.analysis, seedlab.report) never imports the training side: no
torch, transformers, ray or peft, no seedlab.train or seedlab.run, at module level or inside functions, so
`seedlab analyze` runs where none of them is installed. seedlab.stats is pure numpy/scipy and imports nothing
from seedlab outside itself, not even seedlab.errors: its estimators raise ValueError, as scikit-learn's do,
and the analysis layer words errors for users. Every MLflow run query goes through seedlab/store/contract.py,
whose queries page through the whole result; a raw `search_runs` elsewhere would read one page.

The scans read each module's AST; a subprocess then checks that importing the analysis side, running
`seedlab analyze --help` and a real `seedlab analyze` on a small store load none of the heavy packages.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "seedlab"
ANALYSIS_SIDE = ("stats", "analysis", "report")
FORBIDDEN = ("torch", "transformers", "ray", "peft", "seedlab.train", "seedlab.run")
HEAVY = ("torch", "transformers", "ray")  # what the subprocess checks look for in sys.modules
CONTRACT = PACKAGE / "store" / "contract.py"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import anywhere in `source`, the code of module `module`.

    `from a import b` yields both `a` and `a.b` (b may be a submodule); relative imports are resolved
    against `module`; `importlib.import_module(...)` and `__import__(...)` yield their constant argument,
    or `<dynamic>` when the name is computed and so cannot be checked."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "import_module",
                                                                        "__import__"):
            arg = node.args[0] if node.args else None
            constant = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            found.append((node.lineno, arg.value if constant else "<dynamic>"))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def forbidden_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Imports of the training side, as 'line N: name'."""
    return [f"line {line}: {name}" for line, name in imported_modules(source, module, is_package=is_package)
            if name == "<dynamic>" or any(_within(name, f) for f in FORBIDDEN)]


def seedlab_imports_outside_stats(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Imports from seedlab outside seedlab.stats (the bare `seedlab` package, a parent, is fine)."""
    return [f"line {line}: {name}" for line, name in imported_modules(source, module, is_package=is_package)
            if name.startswith("seedlab.") and not _within(name, "seedlab.stats")]


def raw_run_queries(source: str) -> list[str]:
    """Every use of a `search_runs` method, called or passed on (as to `retry`), as 'line N: ...'."""
    return [f"line {node.lineno}: {ast.unparse(node)}" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and node.attr == "search_runs"]


def _sources(*packages: str) -> list[Path]:
    return sorted(p for name in packages for p in (PACKAGE / name).rglob("*.py"))


def _scan(scanner, path: Path) -> list[str]:
    return scanner(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --------------------------------------------------------------------------------------------------
# the scanners catch each pattern
# --------------------------------------------------------------------------------------------------


def test_the_import_scan_finds_each_way_to_import_the_training_side():
    bad = ("import torch\n"
           "import torch.nn as nn\n"
           "from transformers import BertModel\n"
           "from ray import tune\n"
           "import peft\n"
           "def inside():\n"
           "    import ray.tune\n"
           "    from seedlab.train.models import resolve_model\n"
           "class Lazy:\n"
           "    def method(self):\n"
           "        from seedlab import run\n"
           "from ..train import finetune\n"
           "from .. import run as running\n"
           "import importlib\n"
           "importlib.import_module('transformers')\n"
           "__import__('torch')\n"
           "importlib.import_module(name)\n")
    found = forbidden_imports(bad, "seedlab.analysis.analyze")
    assert sorted({int(f.split()[1].rstrip(":")) for f in found}) == [1, 2, 3, 4, 5, 7, 8, 11, 12, 13, 15, 16, 17], found
    allowed = ("import numpy as np\nimport torchmetrics_like\nfrom raytracer import x\nimport transformers_doc\n"
               "from seedlab.stats.design import RunTable\nfrom seedlab.store.contract import client\n"
               "from . import loader\nfrom .render import render_summary\n")
    assert forbidden_imports(allowed, "seedlab.analysis.analyze") == []
    # a package's own relative imports resolve against the package, not its parent
    assert forbidden_imports("from .train import x\n", "seedlab", is_package=True) == ["line 1: seedlab.train",
                                                                                     "line 1: seedlab.train.x"]


def test_the_stats_scan_finds_each_import_from_seedlab_outside_stats():
    bad = ("from seedlab.data.catalog import BERT_SIZES\n"
           "from seedlab.errors import SeedlabError\n"
           "from seedlab import __version__\n"
           "import seedlab.store.predictions\n"
           "def inside():\n"
           "    from ..analysis import analyze\n"
           "from .. import errors\n")
    found = seedlab_imports_outside_stats(bad, "seedlab.stats.agreement")
    assert sorted({int(f.split()[1].rstrip(":")) for f in found}) == [1, 2, 3, 4, 6, 7], found
    allowed = ("import numpy as np\nfrom scipy.stats import spearmanr\nfrom seedlab.stats import metrics\n"
               "from seedlab.stats.design import RunTable\nimport seedlab.stats.agreement\nfrom . import metrics\n"
               "from .design import RunTable\n")
    assert seedlab_imports_outside_stats(allowed, "seedlab.stats.methods") == []
    assert seedlab_imports_outside_stats("from .zhong import momentum\n", "seedlab.stats", is_package=True) == []


def test_the_query_scan_finds_calls_and_references():
    source = ("runs = client.search_runs([e], 'x')\n"
              "page = retry(store.search_runs, [e], max_results=10)\n"
              "import mlflow\nmlflow.search_runs()\n"
              "client.search_experiments()\nfind_runs(client, [e])\n")
    assert [f.split(":")[0] for f in raw_run_queries(source)] == ["line 1", "line 2", "line 4"]


# --------------------------------------------------------------------------------------------------
# the rules hold on seedlab's source
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _sources(*ANALYSIS_SIDE), ids=_id)
def test_the_analysis_side_never_imports_the_training_side(path):
    assert _scan(forbidden_imports, path) == []


@pytest.mark.parametrize("path", _sources("stats"), ids=_id)
def test_stats_imports_nothing_from_seedlab_outside_stats(path):
    assert _scan(seedlab_imports_outside_stats, path) == []


def test_the_scans_see_every_module_of_the_analysis_side():
    names = {module_name(p) for p in _sources(*ANALYSIS_SIDE)}
    assert {"seedlab.stats", "seedlab.stats.agreement", "seedlab.analysis.loader", "seedlab.report.figures"} <= names


@pytest.mark.parametrize("path", [p for p in sorted(PACKAGE.rglob("*.py")) if p != CONTRACT], ids=_id)
def test_no_raw_run_query_outside_the_contract(path):
    assert raw_run_queries(path.read_text()) == []


def test_the_contract_is_where_runs_are_queried():
    assert raw_run_queries(CONTRACT.read_text())  # else the check above proves nothing


# --------------------------------------------------------------------------------------------------
# what a process of the analysis side really loads
# --------------------------------------------------------------------------------------------------


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _imported_by(stderr: str) -> set[str]:
    """The modules that `python -X importtime` reports having imported."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def _heavy(modules) -> list[str]:
    return sorted(m for m in modules if any(_within(m, h) for h in HEAVY))


def test_importing_the_analysis_side_loads_no_training_package(tmp_path):
    code = ("import json, sys\n"
            "import seedlab.stats, seedlab.analysis.analyze, seedlab.analysis.loader, seedlab.report, seedlab.cli\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    proc = _run(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    assert "seedlab.analysis.loader" in loaded  # the imports did happen
    assert _heavy(loaded) == []


def test_seedlab_analyze_help_loads_no_training_package(tmp_path):
    proc = _run(["-X", "importtime", "-m", "seedlab.cli", "analyze", "--help"], tmp_path)
    assert proc.returncode == 0 and "--experiment" in proc.stdout, proc.stderr[-2000:]
    imported = _imported_by(proc.stderr)
    assert "seedlab.errors" in imported  # seedlab.cli's own import (the module itself runs as __main__)
    assert _heavy(imported) == []


def test_seedlab_analyze_of_a_real_store_loads_no_training_package(tmp_path):
    from seedlab.stats.simulate import simulate_experiment
    from seedlab.store.contract import KIND_TRIAL, TAG_KIND, TAG_TRIAL_KEY, client, get_or_create_experiment, log_run
    from seedlab.store.predictions import write_predictions

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    store = client(uri)
    experiment_id = get_or_create_experiment(store, "layout", uri)
    table, _ = simulate_experiment(n_models=2, model_names=["tiny", "mini"], P=2, F=2, m=60, rng=0, task="sst2")
    for i, run_id in enumerate(table.run_ids):
        model, p, f = table.model[i], int(table.pretrain_seed[i]), int(table.finetune_seed[i])
        path = write_predictions(tmp_path / run_id / "validation.parquet", table.instance_ids, table.labels,
                                 table.predictions[i], table.probs[i])
        log_run(store, experiment_id, f"sst2/{model}/p{p}/f{f}",
                {"task": "sst2", "model": model, "pretrain_seed": p, "finetune_seed": f}, [],
                {TAG_KIND: KIND_TRIAL, TAG_TRIAL_KEY: f"layout-{i}"}, {"predictions": str(path)})
    out = tmp_path / "analysis.json"
    proc = _run(["-X", "importtime", "-m", "seedlab.cli", "analyze", "--experiment", "layout", "--tracking-uri", uri,
                 "--bootstrap", "20", "--no-log", "--json", str(out), "--report", str(tmp_path / "r.html")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(json.loads(out.read_text())["tasks"]["sst2"]["models"]) == {"tiny", "mini"}
    imported = _imported_by(proc.stderr)
    assert {"seedlab.analysis.loader", "mlflow"} <= imported  # it did read the store
    assert _heavy(imported) == []
    assert np.isfinite(json.loads(out.read_text())["tasks"]["sst2"]["models"]["tiny"]["agreement_pairwise"])


# --------------------------------------------------------------------------------------------------
# what each part imports is declared where that part is installed (pyproject.toml)
# --------------------------------------------------------------------------------------------------

# imported by seedlab without being a declared runtime dependency, and why that is right
UNDECLARED_OK = {"requests": "contract.is_transient recognises its errors, under suppress(ImportError); "
                             "mlflow's HTTP client depends on it",
                 "sqlalchemy": "contract.is_transient reads the database errors of mlflow's SQL stores, under "
                               "suppress(ImportError); those stores depend on it"}
# runtime dependencies that seedlab does not import itself, and who does
USED_THROUGH_ANOTHER = {"optuna": "ray.tune.search.optuna, the searcher of tuning stages"}


def _normalise(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(*groups: str) -> set[str]:
    """Distribution names of the runtime dependencies ("runtime") and of the named extras in pyproject.toml."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [line for group in groups
             for line in (project["dependencies"] if group == "runtime" else project["optional-dependencies"][group])]
    return {_normalise(Requirement(line).name) for line in lines}


def _third_party_imports(paths) -> dict[str, set[str]]:
    """{distribution: files importing it} over `paths` (stdlib, seedlab, sibling scripts and the tests' loop oracle
    that a benchmark loads left out)."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in paths:
        siblings = {p.stem for p in path.parent.glob("*.py")} | {p.stem for p in (ROOT / "tests" / "stats").glob("*.py")}
        for _, name in imported_modules(path.read_text(), module_name(path)):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in siblings or top in ("seedlab", "<dynamic>", ""):
                continue
            for dist in owners.get(top, [top]):  # an uninstalled module: its own name
                found.setdefault(_normalise(dist), set()).add(_id(path))
    return found


def _mlflow_family(dists: set[str]) -> set[str]:
    return {"mlflow" if d.startswith("mlflow-") else d for d in dists}  # mlflow-skinny/-tracing ship `mlflow`


def test_every_package_seedlab_imports_is_a_runtime_dependency():
    imported = _mlflow_family(set(_third_party_imports(sorted(PACKAGE.rglob("*.py")))))
    assert imported - _requirements("runtime") - set(UNDECLARED_OK) == set()


def test_every_runtime_dependency_is_used_by_seedlab():
    imported = _mlflow_family(set(_third_party_imports(sorted(PACKAGE.rglob("*.py")))))
    unused = _requirements("runtime") - imported - set(USED_THROUGH_ANOTHER)
    assert unused == set(), f"runtime dependencies seedlab never imports (a test-only one belongs in [test]): {unused}"


def test_every_package_a_benchmark_imports_is_declared():
    imported = _mlflow_family(set(_third_party_imports(sorted((ROOT / "benchmarks").glob("*.py")))))
    assert imported - _requirements("runtime", "bench") == set()
