"""The four analyses of issue 15 from `seedlab analyze` and `seedlab plan`: almost stochastic order, how many
seeds, predictive multiplicity, seed ensembles. A real SQLite store's analysis equals the seedlab.stats functions
applied by hand to the logged runs; the plan command prints its table in the units of the runs' device; a model
with a single run is reported, not a crash; imported Zhou et al. predictions get multiplicity, flip rates and
ensembles; seed-sensitive instances carry their text."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import store_builder
from seedlab.analysis.analyze import AnalysisOptions, analyze, instance_texts
from seedlab.analysis.loader import load_experiment
from seedlab.analysis.plan import plan_experiment
from seedlab.cli import main
from seedlab.report import write_report
from seedlab.stats.aso import aso_pairs
from seedlab.stats.ensembles import seed_ensembles
from seedlab.stats.metrics import accuracy
from seedlab.stats.multiplicity import churn_matrix, flip_rates, rashomon_curve
from seedlab.stats.seed_budget import predicted_half_width, predicted_power, seed_variance
from seedlab.stats.simulate import simulate_experiment
from store_builder import build_store, drop_runs, loaded_experiment
from test_schema import assert_valid

MODELS = ("tiny", "mini")
SEED, B = 5, 60
TRAIN_S = 30.0  # each run logs setup 1 s + train + eval 2 s


@contextlib.contextmanager
def timed_runs(device: str):
    """Trial runs logged with a trial's timing metrics and device param (as seedlab.run.trial logs them)."""
    original = store_builder.log_run

    def log_run(store, experiment_id, name, params, metrics, tags, artifacts, parent_run_id=None):
        metrics = [*metrics, ("time_setup_s", 1.0, 0), ("time_train_s", TRAIN_S, 0), ("time_eval_s", 2.0, 0)]
        return original(store, experiment_id, name, {**params, "device": device}, metrics, tags, artifacts,
                        parent_run_id)

    store_builder.log_run = log_run
    try:
        yield
    finally:
        store_builder.log_run = original


def timed_store(tmp, name, tables, device):
    with timed_runs(device):
        return build_store(tmp, name, tables)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    table, _ = simulate_experiment(n_models=2, model_names=list(MODELS), P=3, F=2, m=80, rng=11, task="sst2",
                                   pretrain_shared=0.2)
    uri = timed_store(tmp_path_factory.mktemp("seeds"), "seeds", [table], "cuda:0")
    options = AnalysisOptions(n_bootstrap=B, seed=SEED, decay_bootstrap=10, ensemble_partitions=15)
    result = analyze(load_experiment("seeds", uri), options)
    return table, uri, options, result


def rows(table, model):
    r = table.model == model  # simulated in (pretraining seed, fine-tuning seed) order, as the loader sorts
    return table.predictions[r], table.probs[r]


def test_real_analysis_validates_and_has_the_four_sections(case):
    _, _, _, result = case
    assert_valid(result)
    t = result["tasks"]["sst2"]
    assert {"aso", "seed_budget", "multiplicity", "ensembles"} <= set(t)


def test_aso_section_is_aso_pairs_of_the_runs_scores(case):
    table, _, options, result = case
    scores = {m: np.array([accuracy(table.labels, p) for p in rows(table, m)[0]]) for m in MODELS}
    want = aso_pairs(scores, threshold=options.aso_threshold, confidence_level=options.aso_confidence,
                     n_bootstrap=B, rng=np.random.default_rng(SEED))
    got = result["tasks"]["sst2"]["aso"]
    assert got["models"]["pairs"] == json.loads(json.dumps(want["pairs"]))
    assert got["models"]["n_comparisons"] == 2 and got["threshold"] == 0.2 and "methods" not in got


def test_seed_budget_section_is_the_pilots_components_and_predictions(case):
    table, _, _, result = case
    b = result["tasks"]["sst2"]["seed_budget"]
    pilots = {}
    for model in MODELS:
        grid = table.grid(model).complete()
        pilots[model] = v = seed_variance(grid.correct)
        e = b["models"][model]
        assert e["components"] == v.as_dict()["components"] and (e["P"], e["F"]) == (3, 2)
        assert e["pilot_half_width"] == pytest.approx(predicted_half_width(v, P=3, F=2))
        assert e["curves"]["half_width"][0][0] == pytest.approx(predicted_half_width(v, P=2, F=1))
        assert e["seconds_per_run"] == pytest.approx(1.0 + TRAIN_S + 2.0) and e["unit"] == "GPU-hours"
        mb = result["tasks"]["sst2"]["multibootstrap"]["models"][model]
        assert e["multibootstrap_half_width"] == pytest.approx((mb["ci_high"] - mb["ci_low"]) / 2)
    pair = b["pairs"][0]
    assert (pair["a"], pair["b"]) == MODELS
    for P, d in zip(pair["P"], pair["detectable_difference"]):  # each is the delta detected with power 0.8
        assert predicted_power(pilots["tiny"], pilots["mini"], delta=d, P=P, F=2) == pytest.approx(0.8, abs=1e-6)


def test_multiplicity_and_ensemble_sections_are_the_stats_functions(case):
    table, _, options, result = case
    t = result["tasks"]["sst2"]
    for model in MODELS:
        preds, probs = rows(table, model)
        scores = [accuracy(table.labels, p) for p in preds]
        curve = rashomon_curve(preds, scores, epsilon=options.rashomon_epsilon)
        flips = flip_rates(preds, n_classes=2)
        e = t["multiplicity"]["models"][model]
        assert e["at_epsilon"] == curve["at_epsilon"] and e["curve"]["ambiguity"] == curve["ambiguity"]
        assert e["flip"]["histogram"] == flips["histogram"]
        top = e["instances"][0]
        k = list(table.instance_ids).index(top["instance_id"])
        assert top["flip_rate"] == flips["flip_rate"].max() == flips["flip_rate"][k]
        assert top["text_a"] is None  # simulated ids are no task's rows
        ens = seed_ensembles(preds, probs, table.labels, n_partitions=15, rng=SEED)
        got = t["ensembles"]["models"][model]
        for mine, want in zip(got["sizes"], ens["sizes"]):
            assert mine["pd"] == want["pd"] and mine["score"] == want["score"]
            assert mine["hours"] == pytest.approx(mine["k"] * (1.0 + TRAIN_S + 2.0) / 3600)
    assert t["multiplicity"]["churn"] == churn_matrix({m: rows(table, m)[0] for m in MODELS})
    assert "ids only" in t["multiplicity"]["texts_note"]


def test_the_report_draws_the_four_figures_with_their_numbers(case, tmp_path):
    _, _, _, result = case
    text = write_report(result, tmp_path / "r.html", figures_dir=tmp_path / "figs").read_text(encoding="utf-8")
    assert {p.stem for p in (tmp_path / "figs").glob("*.png")} >= {"sst2-aso", "sst2-seed-budget", "sst2-multiplicity",
                                                                  "sst2-ensembles"}
    t = result["tasks"]["sst2"]
    assert f"{t['aso']['models']['pairs'][0]['eps_min']:.4f}" in text
    assert f"{t['seed_budget']['models']['mini']['pilot_half_width']:.4f}" in text
    assert f"{t['multiplicity']['models']['tiny']['at_epsilon']['ambiguity']:.4f}" in text
    assert t["multiplicity"]["models"]["tiny"]["instances"][0]["instance_id"] in text
    k2 = t["ensembles"]["models"]["mini"]["sizes"][1]["pd"]
    assert f"{k2['point']:.4f} [{k2['ci_low']:.4f}, {k2['ci_high']:.4f}]" in text


# --------------------------------------------------------------------------------------------------
# seedlab plan
# --------------------------------------------------------------------------------------------------


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_plan_prints_designs_with_the_runs_own_cost(case, tmp_path):
    _, uri, _, _ = case
    code, out, _ = cli("plan", "--experiment", "seeds", "--tracking-uri", uri, "--half-width", "0.09",
                       "--json", str(tmp_path / "plan.json"))
    assert code == 0 and "GPU-hours" in out and "recommended" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    for model in MODELS:
        e = plan["tasks"]["sst2"][model]
        best = next(r for r in e["rows"] if r["recommended"])
        assert best["hours"] == pytest.approx(best["runs"] * (1.0 + TRAIN_S + 2.0) / 3600)
        assert f"{best['P']}  {best['F']}" in out or str(best["P"]) in out
    code, out, _ = cli("plan", "--experiment", "seeds", "--tracking-uri", uri, "--delta", "0.05", "--power", "0.9",
                       "--pretrain-hours", "2")
    assert code == 0 and "power 0.9" in out and "per new pretraining seed" in out


def test_plan_says_cpu_hours_for_cpu_runs(tmp_path):
    table, _ = simulate_experiment(n_models=2, model_names=list(MODELS), P=2, F=2, m=60, rng=3, task="rte")
    uri = timed_store(tmp_path, "cpu", [table], "cpu")
    plan = plan_experiment(load_experiment("cpu", uri), delta=0.1, models=["tiny", "mini"])
    e = plan["tasks"]["rte"]["mini - tiny"]
    assert e["unit"] == "CPU-hours" and all(r["runs"] == 2 * r["P"] * r["F"] for r in e["rows"])
    code, out, _ = cli("plan", "--experiment", "cpu", "--tracking-uri", uri, "--half-width", "0.2")
    assert code == 0 and "CPU-hours" in out and "GPU-hours" not in out


@pytest.mark.parametrize("args,fragment", [
    ([], "give one target: --half-width H"),
    (["--half-width", "0"], "invalid --half-width 0.0 (valid: a number in (0, 1)"),
    (["--delta", "0.1", "--models", "tiny", "giant"], "unknown model 'giant' for task 'sst2' (valid: tiny, mini)"),
    (["--delta", "0.1", "--models", "tiny"], "--delta compares two models"),
    (["--half-width", "0.1", "--task", "cola"], "--task: unknown task 'cola' (valid: sst2)"),
    (["--half-width", "0.1", "--max-pretrain", "1"], "invalid --max-pretrain 1"),
])
def test_plan_rejects_bad_input_in_one_line(case, args, fragment):
    _, uri, _, _ = case
    code, out, err = cli("plan", "--experiment", "seeds", "--tracking-uri", uri, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("seedlab: ") and fragment in lines[0], err


def test_plan_is_listed_in_the_help():
    proc = subprocess.run([sys.executable, "-m", "seedlab.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "plan" in proc.stdout and "how many seeds" in proc.stdout


# --------------------------------------------------------------------------------------------------
# a model with a single classification run (a crash before: decay_lower_bound raised ValueError)
# --------------------------------------------------------------------------------------------------


def test_a_single_run_model_is_reported_not_a_crash(tmp_path):
    t, _ = simulate_experiment(n_models=2, model_names=list(MODELS), P=1, F=3, m=50, rng=0, task="sst2")
    t = drop_runs(t, ~((t.model == "tiny") & (t.finetune_seed > 0)))  # tiny: one run
    result = analyze(loaded_experiment([t]), AnalysisOptions(n_bootstrap=20, decay_bootstrap=5, ensemble_partitions=5))
    assert_valid(result)
    z = result["tasks"]["sst2"]["zhong"]
    assert z["decay"] == [] and [(d["from"], d["to"]) for d in z["decay_unavailable"]] == [("tiny", "mini"),
                                                                                          ("mini", "tiny")]
    assert all("tiny has a single run" in d["unavailable"] for d in z["decay_unavailable"])
    t15 = result["tasks"]["sst2"]
    assert "1 run" in t15["multiplicity"]["models"]["tiny"]["unavailable"]
    assert "tiny (1 run)" in t15["aso"]["models"]["unavailable"]
    text = write_report(result, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "tiny has a single run" in text and "could not be drawn" not in text
    from seedlab.analysis.render import render_summary

    assert "decaying instances tiny -> mini: not available: tiny has a single run" in render_summary(result)


# --------------------------------------------------------------------------------------------------
# real data: instance texts, imported Zhou et al. predictions
# --------------------------------------------------------------------------------------------------


@pytest.mark.needs_data
def test_seed_sensitive_instances_map_back_to_the_tasks_rows(monkeypatch, tmp_path):
    from seedlab.data.tasks import load_task

    _, evaluation = load_task("rte", source="local")
    ids = list(evaluation["instance_id"][:3])
    texts, note = instance_texts("rte", ids)
    assert note is None and [texts[i][0] for i in ids] == list(evaluation["text_a"][:3])
    assert instance_texts("mnli-mm", ["dev_mm-000001"])[1] == "task 'mnli-mm' is not in seedlab.data.tasks: instance ids only"
    monkeypatch.setenv("SEEDLAB_DATA", str(tmp_path))  # no local data there
    texts, note = instance_texts("rte", ids)
    assert texts == {} and "no local data for 'rte'" in note


ZHOU = Path("/work/shared/data/predictions/zhou2020_instability_bert_base_mnli")


@pytest.mark.needs_data
def test_imported_zhou_predictions_get_multiplicity_flip_rates_and_ensembles(tmp_path):
    from seedlab.data.paths import local_data_dir
    from seedlab.store.importer import import_predictions

    folder = ZHOU if ZHOU.is_dir() else local_data_dir() / "predictions" / ZHOU.name
    if not folder.is_dir():
        pytest.skip(f"{ZHOU.name} is not in the data dir")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    import_predictions(folder, experiment="zhou", tracking_uri=uri)
    loaded = load_experiment("zhou", uri)
    result = analyze(loaded, AnalysisOptions(n_bootstrap=20, decay_bootstrap=5, ensemble_partitions=10))
    assert_valid(result)
    model = "bert-base-zhou2020"
    for task, t in result["tasks"].items():
        mu = t["multiplicity"]["models"][model]
        assert mu["n_runs"] == 10 and sum(mu["flip"]["histogram"]["instances"]) == t["n_instances"]
        assert 0 < mu["flip"]["share_unstable"] < 0.5 and mu["at_epsilon"]["ambiguity"] > 0
        ens = t["ensembles"]["models"][model]
        assert ens["combine"] == "mean probabilities" and [s["k"] for s in ens["sizes"]] == [1, 2, 4, 8]
        assert ens["sizes"][2]["pd"]["point"] < ens["sizes"][0]["pd"]["point"]  # 4 seeds disagree less than 1
        assert "P=1" in t["seed_budget"]["models"][model]["unavailable"]
        assert "needs at least two models" in t["aso"]["models"]["unavailable"]
        first = mu["instances"][0]
        if task == "mnli":  # dev-matched ids are seedlab.data.tasks' MNLI rows
            assert first["text_a"] and t["multiplicity"]["texts_note"] is None
        else:
            assert first["text_a"] is None and "instance ids only" in t["multiplicity"]["texts_note"]
    assert "mnli" in result["tasks"]


def test_the_analysis_stays_torch_free():
    code = ("import sys\nfrom seedlab.analysis import analyze, plan, render\nfrom seedlab.report import figures\n"
            "from seedlab.stats import aso, seed_budget, multiplicity, ensembles\n"
            "bad = [m for m in ('torch', 'transformers', 'ray', 'seedlab.train', 'seedlab.run') if m in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
