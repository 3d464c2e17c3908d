"""A real sweep: Ray Tune trials fine-tuning real BERTs on real RTE data, logged to a real MLflow store,
then `seedlab analyze` checked against an independent computation from the parquet artifacts."""

import io
import itertools
import json
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.needs_data("glue/SST-2", "corpus/wikitext-2")]

# Large enough that the models learn something (so predictions vary and the agreement figures are not trivial).
SPEC_KW = dict(name="itest", tasks=("sst2",), models=("tiny", "mini"), pretrain_seeds=(0, 1), finetune_seeds=(0, 1),
               hparams={"learning_rate": 1e-3, "batch_size": 16, "epochs": 4, "max_seq_length": 32},
               data={"max_train": 256, "max_eval": 100}, log_representations=True)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    import ray

    from seedlab.run.sweep import SweepSpec, run_sweep

    store = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{store}/mlflow.db"
    out = io.StringIO()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        result = run_sweep(SweepSpec(**SPEC_KW), experiment="itest", tracking_uri=uri, out=out)
        rerun_out = io.StringIO()
        rerun = run_sweep(SweepSpec(**SPEC_KW), experiment="itest", tracking_uri=uri, out=rerun_out)
    finally:
        ray.shutdown()
    return {"uri": uri, "result": result, "out": out.getvalue(), "rerun": rerun, "rerun_out": rerun_out.getvalue(),
            "tmp": store}


def _trial_runs(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("itest")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`seedlab.kind` = 'trial'")
    return client, exp, runs


def test_every_cell_is_one_finished_run_nested_under_the_sweep_run(sweep):
    assert sweep["result"].finished == 8 and sweep["result"].failed == 0
    client, exp, runs = _trial_runs(sweep["uri"])
    assert len(runs) == 8 and all(r.info.status == "FINISHED" for r in runs)
    parent = client.get_run(sweep["result"].parent_run_id)
    assert parent.data.tags["seedlab.kind"] == "sweep" and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    cells = {(r.data.params["model"], r.data.params["pretrain_seed"], r.data.params["finetune_seed"]) for r in runs}
    assert cells == set(itertools.product(("tiny", "mini"), ("0", "1"), ("0", "1")))
    names = {r.data.tags["mlflow.runName"] for r in runs}
    assert "sst2/mini/p1/f0" in names
    assert len({r.data.tags["seedlab.trial_key"] for r in runs}) == 8


def test_runs_carry_params_metrics_and_tags(sweep):
    client, _, runs = _trial_runs(sweep["uri"])
    for run in runs:
        p = run.data.params
        for name in ("task", "model", "pretrain_seed", "finetune_seed", "init_seed", "order_seed", "dropout_seed",
                     "learning_rate", "batch_size", "epochs", "warmup_ratio", "weight_decay", "max_seq_length"):
            assert name in p, name
        assert {"seedlab.sweep", "seedlab.trial_key", "seedlab.git_commit", "seedlab.version"} <= set(run.data.tags)
        assert re.fullmatch(r"[0-9a-f]{56}", run.data.tags["seedlab.ray_node_id"])  # the Ray node it ran on
        assert 0.0 <= run.data.metrics["eval_accuracy"] <= 1.0
        curve = client.get_metric_history(run.info.run_id, "train_loss")
        assert len(curve) >= 1 and all(np.isfinite(m.value) for m in curve)


def test_predictions_artifact_schema(sweep):
    import pyarrow as pa

    client, _, runs = _trial_runs(sweep["uri"])
    local = client.download_artifacts(runs[0].info.run_id, "predictions/validation.parquet", str(sweep["tmp"]))
    table = pq.read_table(local)
    assert table.schema.field("instance_id").type == pa.string()
    assert table.schema.field("label").type == pa.int64() and table.schema.field("prediction").type == pa.int64()
    assert table.schema.field("probs").type == pa.list_(pa.float32())
    assert table.num_rows == 100


def test_concurrent_trials_shared_the_store(sweep):
    assert "running 2" in sweep["out"]  # two trials wrote to the SQLite store at once, none failed
    assert "ETA" in sweep["out"]


def test_rerun_skips_every_finished_cell(sweep):
    assert sweep["rerun"].skipped == 8 and sweep["rerun"].finished == 0
    assert "8 already finished, 0 to run" in sweep["rerun_out"]
    _, _, runs = _trial_runs(sweep["uri"])
    assert len(runs) == 8


def _independent_figures(sweep):
    """Recompute the analysis from the parquet files with nothing but pyarrow and numpy."""
    client, _, runs = _trial_runs(sweep["uri"])
    per_model = {}
    for run in runs:
        path = client.download_artifacts(run.info.run_id, "predictions/validation.parquet", str(sweep["tmp"] / run.info.run_id))
        t = pq.read_table(path).to_pydict()
        order = np.argsort(t["instance_id"])
        per_model.setdefault(run.data.params["model"], []).append(
            (np.array(t["prediction"])[order], np.array(t["label"])[order]))
    figures = {}
    for model, items in per_model.items():
        preds = np.stack([p for p, _ in items])
        labels = items[0][1]
        acc = [float(np.mean(p == labels)) for p in preds]
        pairs = list(itertools.combinations(range(len(preds)), 2))
        agree = np.mean([np.mean(preds[i] == preds[j]) for i, j in pairs])
        all_same = np.mean([len(set(preds[:, k])) == 1 for k in range(preds.shape[1])])
        figures[model] = {"mean": np.mean(acc), "sd": np.sqrt(np.mean((np.array(acc) - np.mean(acc)) ** 2)),
                          "min": min(acc), "max": max(acc), "agreement_pairwise": agree, "consistency_all": all_same,
                          "preds": preds}
    return figures


def test_analyze_matches_an_independent_computation(sweep, tmp_path):
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    out = tmp_path / "analysis.json"
    proc = subprocess.run([sys.executable, "-m", "seedlab.cli", "analyze", "--experiment", "itest",
                           "--tracking-uri", sweep["uri"], "--json", str(out), "--report", str(tmp_path / "r.html")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "consistency_all" in proc.stdout and "ddof=0" in proc.stdout
    result = json.loads(out.read_text())
    expected = _independent_figures(sweep)
    # Not a trivial comparison: some run's predictions vary across instances, and some runs disagree.
    assert any(len(np.unique(run)) > 1 for e in expected.values() for run in e["preds"])
    assert any(e["agreement_pairwise"] < 1 for e in expected.values())
    models = result["tasks"]["sst2"]["models"]
    assert set(models) == {"tiny", "mini"}
    for model, exp in expected.items():
        got = models[model]
        assert got["n_runs"] == 4
        acc = got["metrics"]["accuracy"]
        assert acc["ddof"] == 0
        for key in ("mean", "sd", "min", "max"):
            assert acc[key] == pytest.approx(exp[key], abs=1e-12), (model, key)
        assert got["agreement_pairwise"] == pytest.approx(exp["agreement_pairwise"], abs=1e-12)
        assert got["consistency_all"] == pytest.approx(exp["consistency_all"], abs=1e-12)
        table, _ = aggregate_raters(exp["preds"].T)
        assert got["fleiss_kappa"] == pytest.approx(fleiss_kappa(table), abs=1e-10)


def test_representation_measures_come_from_the_logged_states(sweep, tmp_path):
    from seedlab.analysis.analyze import AnalysisOptions, analyze
    from seedlab.analysis.loader import load_experiment

    loaded = load_experiment("itest", sweep["uri"])
    reps = loaded.representations["sst2"]
    assert len(reps) == 8
    result = analyze(loaded, AnalysisOptions(compare=("tiny", "mini"), n_bootstrap=200))
    section = result["tasks"]["sst2"]["representations"]
    assert section["tiny"]["n_layers"] == 2 and section["mini"]["n_layers"] == 4
    for model in ("tiny", "mini"):
        for curve in section[model]["by_layer"].values():
            assert all(0.0 <= d <= 1.0 + 1e-9 for d in curve)
    comparison = result["tasks"]["sst2"]["multibootstrap"]["comparison"]
    assert comparison["baseline"] == "tiny" and comparison["intervention"] == "mini"
    both, seeds_only = comparison["seeds_and_examples"]["delta"], comparison["seeds_only"]["delta"]
    assert both["ci_low"] <= both["point"] <= both["ci_high"]
    assert seeds_only["ci_high"] - seeds_only["ci_low"] <= both["ci_high"] - both["ci_low"] + 1e-12
