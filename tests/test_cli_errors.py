"""Bad input: a one-line error naming what is wrong and what is valid, exit code 2, no traceback,
nothing launched or written."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(args, cwd, env_extra=None):
    import os

    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", **(env_extra or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("seedlab: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args,fragments", [
    (["--profile", "huge"], ["unknown profile 'huge'", "valid: smoke, cpu, paper"]),
    (["--tasks", "sst3"], ["unknown task 'sst3'", "sst2"]),
    (["--models", "gigantic"], ["unknown model 'gigantic'", "tiny, mini"]),
    (["--finetune-seeds", "1,x"], ["invalid --finetune-seeds", "non-negative integers"]),
    (["--pretrain-seeds", "-1"], ["invalid seed -1"]),
])
def test_sweep_rejects_bad_options_before_launching_anything(tmp_path, args, fragments):
    proc = run([sys.executable, str(ROOT / "sweeps" / "bert_sizes.py"), *args], cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "mlruns").exists()  # no store was created, no Ray was started


@pytest.fixture
def store(tmp_path):
    """A real MLflow store with an empty experiment and two broken ones."""
    from seedlab.store.predictions import write_predictions
    from seedlab.store.contract import client, get_or_create_experiment, log_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow_client = client(uri)
    get_or_create_experiment(mlflow_client, "empty", uri)
    params = {"task": "sst2", "model": "tiny", "pretrain_seed": 0, "finetune_seed": 0}
    tags = {"seedlab.kind": "trial", "seedlab.trial_key": "k0"}
    bad = tmp_path / "bad" / "validation.parquet"
    bad.parent.mkdir()
    pq.write_table(pa.table({"instance_id": ["a"], "label": [1]}), bad)
    exp = get_or_create_experiment(mlflow_client, "malformed", uri)
    log_run(mlflow_client, exp, "sst2/tiny/p0/f0", params, [], tags, {"predictions": str(bad)})
    exp = get_or_create_experiment(mlflow_client, "mismatched", uri)
    for seed, ids in ((0, ["a", "b", "c"]), (1, ["a", "b", "d"])):
        good = write_predictions(tmp_path / f"g{seed}" / "validation.parquet", ids, [0, 1, 1], [0, 1, 0],
                                 np.full((3, 2), 0.5))
        log_run(mlflow_client, exp, f"sst2/tiny/p0/f{seed}", {**params, "finetune_seed": seed}, [],
                {**tags, "seedlab.trial_key": f"k{seed}"}, {"predictions": str(good)})
    return uri


@pytest.mark.parametrize("experiment,fragments", [
    ("nope", ["unknown experiment 'nope'", "valid: ", "empty"]),
    ("empty", ["experiment 'empty' has no FINISHED trial runs"]),
    ("malformed", ["malformed predictions artifact", "sst2/tiny/p0/f0", "missing column(s) ['prediction']"]),
    ("mismatched", ["do not share instance ids", "sst2/tiny/p0/f1", "sst2/tiny/p0/f0"]),
])
def test_analyze_bad_experiments(store, tmp_path, experiment, fragments):
    out = tmp_path / "out.json"
    proc = run([sys.executable, "-m", "seedlab.cli", "analyze", "--experiment", experiment, "--tracking-uri", store,
                "--json", str(out)], cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert not out.exists() and not Path(str(out) + ".tmp").exists()


def test_analyze_rejects_bad_options(store, tmp_path):
    proc = run([sys.executable, "-m", "seedlab.cli", "analyze", "--experiment", "empty", "--tracking-uri", store,
                "--bootstrap", "0"], cwd=tmp_path)
    assert_one_line_error(proc, "invalid --bootstrap 0")
    proc = run([sys.executable, "-m", "seedlab.cli", "analyze", "--experiment", "empty", "--tracking-uri", store,
                "--json", str(tmp_path / "no" / "such" / "dir.json")], cwd=tmp_path)
    assert_one_line_error(proc, "--json directory")
    proc = run([sys.executable, "-m", "seedlab.cli", "analyze", "--experiment", "empty", "--tracking-uri", store,
                "--figures", str(tmp_path / "no" / "such" / "figures")], cwd=tmp_path)
    assert_one_line_error(proc, "--figures directory")


def test_declared_cells_follow_a_sweep_s_per_model_seed_lists(tmp_path):
    from seedlab.analysis.loader import load_experiment
    from seedlab.store.predictions import write_predictions
    from seedlab.store.contract import client, get_or_create_experiment, log_run, start_sweep_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow_client = client(uri)
    exp = get_or_create_experiment(mlflow_client, "per-model", uri)
    start_sweep_run(mlflow_client, exp, "s", {"tasks": "sst2", "models": "tiny,mini", "pretrain_seeds": "0,1",
                                              "model_pretrain_seeds": "mini:0", "finetune_seeds": "0",
                                              "model_finetune_seeds": "mini:0,1", "methods": "standard"})
    path = write_predictions(tmp_path / "p" / "validation.parquet", ["a", "b"], [0, 1], [0, 0], np.full((2, 2), 0.5))
    log_run(mlflow_client, exp, "sst2/mini/p0/f0", {"task": "sst2", "model": "mini", "pretrain_seed": 0,
            "finetune_seed": 0}, [], {"seedlab.kind": "trial", "seedlab.trial_key": "k"}, {"predictions": str(path)})
    assert load_experiment("per-model", uri).missing_cells == ["sst2/mini/p0/f1", "sst2/tiny/p0/f0",
                                                               "sst2/tiny/p1/f0"]


def test_analyze_names_declared_cells_without_a_finished_run(tmp_path):
    """A partial design is reported, not silently analysed as if complete."""
    from seedlab.analysis.loader import load_experiment
    from seedlab.store.predictions import write_predictions
    from seedlab.store.contract import client, get_or_create_experiment, log_run, start_sweep_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow_client = client(uri)
    exp = get_or_create_experiment(mlflow_client, "partial", uri)
    start_sweep_run(mlflow_client, exp, "s", {"tasks": "sst2", "models": "tiny", "pretrain_seeds": "0,1",
                                              "finetune_seeds": "0", "methods": "standard"})
    for seed, status in ((0, "FINISHED"), (1, "FAILED")):
        path = write_predictions(tmp_path / f"p{seed}" / "validation.parquet", ["a", "b"], [0, 1], [0, 0],
                                 np.full((2, 2), 0.5))
        run_id = log_run(mlflow_client, exp, f"sst2/tiny/p{seed}/f0", {"task": "sst2", "model": "tiny",
                      "pretrain_seed": seed, "finetune_seed": 0}, [], {"seedlab.kind": "trial",
                      "seedlab.trial_key": f"k{seed}"}, {"predictions": str(path)})
        if status == "FAILED":
            mlflow_client.set_terminated(run_id, "FAILED")
    loaded = load_experiment("partial", uri)
    assert loaded.missing_cells == ["sst2/tiny/p1/f0"]
    assert loaded.unfinished == ["sst2/tiny/p1/f0 (FAILED)"]
    proc = run([sys.executable, "-m", "seedlab.cli", "analyze", "--experiment", "partial", "--tracking-uri", uri,
                "--no-log", "--report", str(tmp_path / "r.html"), "--figures", str(tmp_path / "figures")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert f"{len(pngs)} figures written to" in proc.stdout
    assert "incomplete design: 1 declared grid cell(s) have no FINISHED run: sst2/tiny/p1/f0" in proc.stdout
    assert "sst2/tiny/p1/f0 (FAILED)" in proc.stdout
