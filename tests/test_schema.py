"""The analysis result against its JSON Schema (seedlab/analysis/schema.json): real analyses validate, every
section included; the schema rejects what the producer does not make; and every key a consumer (render,
publish, seedlab.report) reads is in the schema."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from seedlab.analysis.analyze import SCHEMA, AnalysisOptions, analyze, load_schema
from seedlab.analysis.loader import load_experiment
from seedlab.stats.simulate import simulate_experiment
from store_builder import build_store, drop_runs, loaded_experiment, regression_table, representations_for

ROOT = Path(__file__).resolve().parent.parent
CONSUMERS = ("seedlab/analysis/render.py", "seedlab/analysis/publish.py", "seedlab/report/figures.py",
             "seedlab/report/html.py")
# string subscripts in the consumers that are not keys of the result's schema, and why
NOT_SCHEMA_KEYS = {
    "FINISHED": "a key of runs.by_status, whose keys are MLflow run statuses (data, not schema)",
    "cividis": "a matplotlib colormap name",
}


def errors(result: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(load_schema())
    found = sorted(validator.iter_errors(result), key=lambda e: list(map(str, e.absolute_path)))
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in found]


def assert_valid(result: dict) -> None:
    as_written = json.loads(json.dumps(result, allow_nan=False))  # what `seedlab analyze --json` writes
    problems = errors(as_written)
    assert not problems, "\n".join(problems[:15])


# --------------------------------------------------------------------------------------------------
# the schema itself
# --------------------------------------------------------------------------------------------------


def test_schema_is_a_valid_json_schema_of_the_current_version():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"] == {"const": SCHEMA} and schema["title"].startswith(SCHEMA)
    shipped = ROOT / "seedlab" / "analysis" / "schema.json"
    assert json.loads(shipped.read_text(encoding="utf-8")) == schema
    assert '"seedlab.analysis" = ["schema.json"]' in (ROOT / "pyproject.toml").read_text()  # in the wheel too


# --------------------------------------------------------------------------------------------------
# real analyses validate
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_result(tmp_path_factory) -> dict:
    """The analysis of a real SQLite store: a classification task with a ragged design and logged
    representations, a regression task, and a Multi-Bootstrap comparison."""
    tmp = tmp_path_factory.mktemp("schema-store")
    sst2, _ = simulate_experiment(n_models=3, model_names=["tiny", "mini", "small"], P=2, F=2, m=60, rng=0,
                                  task="sst2")
    sst2 = drop_runs(sst2, sst2.run_ids != "small/standard/p1/f1")  # ragged: a grid cell without a run
    reps = representations_for(sst2)
    reps = {r: s for r, s in reps.items() if not r.startswith("small/") or r == "small/standard/p0/f0"}
    stsb = regression_table("stsb", ["tiny", "mini"], P=1, F=3, m=40, rng=1)
    uri = build_store(tmp, "schema", [sst2, stsb], {"sst2": reps})
    return analyze(load_experiment("schema", uri),
                   AnalysisOptions(compare=("tiny", "mini"), n_bootstrap=30, decay_bootstrap=10))


def test_analysis_of_a_real_store_validates(store_result):
    assert_valid(store_result)
    sst2, stsb = store_result["tasks"]["sst2"], store_result["tasks"]["stsb"]
    # what the store exercised: ragged design, representations (and a model with too few), comparison
    assert not sst2["design"]["small"]["complete"] and sst2["zhong"]["design_notes"]
    assert "by_layer" in sst2["representations"]["tiny"] and "unavailable" in sst2["representations"]["small"]
    assert set(sst2["multibootstrap"]["comparison"]) >= {"seeds_and_examples", "seeds_only", "examples_only"}
    assert stsb["is_regression"] and "zhong" not in stsb and "agreement_note" in stsb["models"]["tiny"]
    # issue 15's sections: every task has ASO (regression too); classification has the other three
    assert {"aso", "seed_budget", "multiplicity", "ensembles"} <= set(sst2) and "pairs" in sst2["aso"]["models"]
    assert "aso" in stsb and not {"seed_budget", "multiplicity", "ensembles"} & set(stsb)
    # Bui/Zhou et al.'s pairwise readings: label consistency for classification, Pearson between runs for regression
    assert set(sst2["models"]["tiny"]["pairwise_consistency"]) == {"n_runs", "n_pairs", "consistency",
                                                                   "correct_consistency"}
    assert set(stsb["models"]["tiny"]["pairwise_consistency"]) == {"n_runs", "n_pairs", "pearson", "n_undefined"}


def designs():
    """Simulated designs that reach the sections a bert_sizes store does not: methods, tuning, a paired
    comparison, one model, a middle model with one pretraining seed."""
    out = {}
    t, _ = simulate_experiment(n_models=5, model_names=["a", "b", "c", "d", "e"], P=1, F=4, m=50, rng=2, task="rte")
    model = np.where(np.isin(t.model, ["a", "b", "c"]), "tiny", "mini")
    t = replace(t, method=np.array(["standard", "mixout", "llrd", "standard", "mixout"])[
        np.searchsorted(["a", "b", "c", "d", "e"], t.model)], model=model)
    t = drop_runs(t, ~((t.model == "mini") & (t.finetune_seed >= 2)))  # mini: 2 runs per method, too few
    out["methods"] = (AnalysisOptions(n_bootstrap=30, decay_bootstrap=10), [t])
    t, _ = simulate_experiment(n_models=4, model_names=["ta", "tb", "ma", "mb"], P=2, F=2, m=50, rng=3, task="rte")
    config = np.char.add("c", np.array([name[1] for name in t.model]))
    t = replace(t, model=np.where(np.char.startswith(t.model.astype(str), "t"), "tiny", "mini"), hp_config=config)
    t = drop_runs(t, ~((t.model == "mini") & (t.finetune_seed == 1)))  # mini: one run per cell, not attributable
    out["tuning"] = (AnalysisOptions(n_bootstrap=30, decay_bootstrap=10), [t])
    t, _ = simulate_experiment(n_models=2, model_names=["base", "int"], P=3, F=2, m=50, rng=4, pretrain_corr=0.5,
                               task="sst2")
    out["paired"] = (AnalysisOptions(compare=("base", "int"), paired=True, n_bootstrap=30, decay_bootstrap=10), [t])
    t, _ = simulate_experiment(n_models=1, model_names=["base"], P=1, F=4, m=50, rng=5, task="rte")
    out["one model"] = (AnalysisOptions(n_bootstrap=30, decay_bootstrap=10), [t])
    t, _ = simulate_experiment(n_models=3, model_names=["tiny", "mini", "small"], P=2, F=2, m=50, n_classes=3,
                               rng=6, task="mnli")
    t = drop_runs(t, ~((t.model == "mini") & (t.pretrain_seed == 1)))
    out["middle model P=1"] = (AnalysisOptions(n_bootstrap=30, decay_bootstrap=10), [t])
    t, _ = simulate_experiment(n_models=2, model_names=["tiny", "mini"], P=1, F=3, m=50, rng=7, task="sst2")
    out["a single run"] = (AnalysisOptions(n_bootstrap=30, decay_bootstrap=10),
                           [drop_runs(t, ~((t.model == "tiny") & (t.finetune_seed > 0)))])
    return out


DESIGNS = designs()


@pytest.mark.parametrize("name", list(DESIGNS))
def test_analyses_of_simulated_designs_validate(name):
    options, tables = DESIGNS[name]
    result = analyze(loaded_experiment(tables), options)
    assert_valid(result)
    task = next(iter(result["tasks"].values()))
    if name == "methods":
        assert "values" in task["methods"]["tiny"] and "unavailable" in task["methods"]["mini"]
    if name == "tuning":
        va = task["variance_attribution"]
        assert va["tiny"]["design"] == "crossed" and "unavailable" in va["mini"]
    if name == "paired":
        assert task["multibootstrap"]["comparison"]["seeds_only"]["settings"]["paired"] is True
    if name == "one model":
        assert task["zhong"]["decay"] == [] and "unavailable" in task["zhong"]["noise"]["base"]
    if name == "middle model P=1":
        assert any("unavailable" in mo for mo in task["zhong"]["momentum"])
    if name == "methods":
        assert "pairs" in task["aso"]["methods"]["tiny"] and "pairs" in task["aso"]["methods"]["mini"]
    if name == "a single run":
        assert task["zhong"]["decay_unavailable"] and "unavailable" in task["ensembles"]["models"]["tiny"]
        assert task["models"]["tiny"]["pairwise_consistency"] is None  # one run: no pair


# --------------------------------------------------------------------------------------------------
# the schema rejects what the producer does not make
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change,where", [
    (lambda r: r["tasks"]["sst2"]["models"]["tiny"].update(spread=0.1), "/tasks/sst2/models/tiny"),
    (lambda r: r["tasks"]["sst2"]["multibootstrap"]["models"]["tiny"].pop("ci_low"), "multibootstrap/models/tiny"),
    (lambda r: r["tasks"]["sst2"].pop("zhong"), "/tasks/sst2"),
    (lambda r: r["tasks"]["stsb"].update(zhong=r["tasks"]["sst2"]["zhong"]), "/tasks/stsb"),
    (lambda r: r["tasks"]["sst2"]["zhong"]["noise"]["tiny"].pop("finetune_share"), "zhong/noise/tiny"),
    (lambda r: r.update(schema="seedlab.analysis/1"), "/schema"),
    (lambda r: r["tasks"]["sst2"]["zhong"]["decay"][0].update(lower_bound="0.1"), "zhong/decay/0/lower_bound"),
    (lambda r: r["tasks"]["sst2"]["aso"]["models"]["pairs"][0].pop("eps_min"), "aso/models"),
    (lambda r: r["tasks"]["sst2"]["multiplicity"]["models"]["tiny"]["instances"][0].update(text="x"),
     "multiplicity/models/tiny"),
    (lambda r: r["tasks"]["sst2"]["seed_budget"].update(metric="mcc"), "seed_budget/metric"),
    (lambda r: r["tasks"]["stsb"].update(ensembles=r["tasks"]["sst2"]["ensembles"]), "/tasks/stsb"),
])
def test_the_schema_rejects_drift(store_result, change, where):
    result = json.loads(json.dumps(store_result))
    change(result)
    problems = errors(result)
    assert problems and any(where in p for p in problems), problems[:5]


# --------------------------------------------------------------------------------------------------
# every key a consumer reads is in the schema
# --------------------------------------------------------------------------------------------------


def _strings(node) -> list[str] | None:
    """The strings of a literal tuple/list/set of strings, or the keys of a literal dict with string keys."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts:
        values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return values if len(values) == len(node.elts) else None
    if isinstance(node, ast.Dict) and node.keys:
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        return keys if len(keys) == len(node.keys) else None
    return None


def keys_read(source: str) -> dict[str, int]:
    """Every constant key a module reads from a dict: ``x["k"]``, ``x.get("k")``, ``"k" in x``, and the string
    items of a literal (or a module-level constant) a ``for`` iterates, which index the result by name."""
    tree = ast.parse(source)
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and (values := _strings(node.value)):
            constants.update({t.id: values for t in node.targets if isinstance(t, ast.Name)})
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        keys = []
        if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)):
            keys = [node.slice.value]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            keys = [node.args[0].value]
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)
              and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)):
            keys = [node.left.value]
        elif isinstance(node, (ast.For, ast.comprehension)):
            it = node.iter
            keys = _strings(it) or (constants.get(it.id, []) if isinstance(it, ast.Name) else [])
        line = node.iter.lineno if isinstance(node, ast.comprehension) else getattr(node, "lineno", 0)
        for key in keys:
            found.setdefault(key, line)
    return found


def schema_keys(schema) -> set[str]:
    """Every property name anywhere in the schema."""
    out: set[str] = set()
    if isinstance(schema, dict):
        out |= set(schema.get("properties", {}))
        for value in schema.values():
            out |= schema_keys(value)
    elif isinstance(schema, list):
        for value in schema:
            out |= schema_keys(value)
    return out


def test_the_key_reader_sees_every_form_of_read():
    src = ('T = ("k5", "k6")\ndef f(t):\n    a = t["k1"]; b = t.get("k2"); c = "k3" in t\n'
           '    d = [t[s] for s in ("k4",)]\n    e = [t[s] for s in T]\n    t["written"] = 1\n')
    assert set(keys_read(src)) == {"k1", "k2", "k3", "k4", "k5", "k6"}


@pytest.mark.parametrize("path", CONSUMERS)
def test_every_key_a_consumer_reads_is_in_the_schema(path):
    known = schema_keys(load_schema())
    read = keys_read((ROOT / path).read_text(encoding="utf-8"))
    unknown = {k: line for k, line in read.items() if k not in known and k not in NOT_SCHEMA_KEYS}
    assert not unknown, f"{path} reads keys the analysis result does not have (line): {unknown}"
    assert set(NOT_SCHEMA_KEYS).isdisjoint(known)


def test_a_consumer_reading_a_key_the_producer_lacks_is_caught():
    known = schema_keys(load_schema())
    drifted = (ROOT / "seedlab/report/html.py").read_text(encoding="utf-8").replace('"finetune_share"', '"fine_share"')
    assert "fine_share" in set(keys_read(drifted)) - known
