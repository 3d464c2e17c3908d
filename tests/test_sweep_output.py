"""What a user's terminal shows for a sweep run as `python sweeps/<file>.py`: the stages, their progress lines
and the result, with no traceback, progress bar or library notice between them."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.needs_data("glue/SST-2", "corpus/wikitext-2")]

REPO = Path(__file__).resolve().parents[1]

SWEEP_FILE = textwrap.dedent("""
    import sys
    from seedlab.run.sweep import SweepSpec, sweep_main

    PROFILES = {"quick": SweepSpec(name="quick", tasks=("sst2",), models=("tiny",), pretrain_seeds=(0,),
                                   finetune_seeds=(0, 1), hparams={"batch_size": 16, "epochs": 1, "max_seq_length": 32},
                                   data={"max_train": 48, "max_eval": 32})}
    sys.exit(sweep_main(PROFILES, default_experiment="output"))
""")


def test_a_local_sweep_prints_stages_progress_and_result_only(tmp_path):
    (tmp_path / "sweep.py").write_text(SWEEP_FILE)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "PYTHONPATH": str(REPO),
           "SEEDLAB_RAY_STORAGE": str(tmp_path / "ray_results")}
    env.pop("RAY_ADDRESS", None)  # a local runtime, as `python sweeps/...` on one machine starts
    proc = subprocess.run([sys.executable, "sweep.py", "--profile", "quick"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 0, shown[-3000:]
    for noise in ("Traceback", "SystemExit", "%|", "Token authentication", "INFO mlflow", "Creating initial MLflow"):
        assert noise not in shown, f"{noise!r} in the sweep's output:\n{shown[-3000:]}"
    lines = [line for line in shown.splitlines() if line.strip()]
    assert lines[0].startswith("[quick] experiment 'output-quick'") and "2 to run" in lines[0]
    assert any(line.startswith("[ray] local runtime started; worker logs in ") for line in lines)
    assert any(line.startswith("[quick] done 2/2 | running 0 | failed 0") for line in lines)
    unexpected = [line for line in lines if not line.startswith(("[quick]", "[ray]"))]
    assert not unexpected, "lines that are not a stage's:\n" + "\n".join(unexpected)
    # the MLflow store is the record: the driver writes no per-trial result files beside Tune's own state
    trial_dirs = [d for d in (tmp_path / "ray_results").glob("*/*") if d.is_dir()]
    assert len(trial_dirs) == 2, trial_dirs
    written = [f.name for d in trial_dirs for f in d.iterdir()]
    assert not [n for n in written if n in ("result.json", "progress.csv") or n.startswith("events.out")], written
    # each trial's directory names its cell, and Tune's saved state holds the name-maker once per trial, not
    # with the grid's cells inside (that made every trial's state as large as the grid)
    assert sorted(d.name[d.name.index("_0000"):] for d in trial_dirs) == ["_00000_sst2_tiny_p0_f0",
                                                                           "_00001_sst2_tiny_p0_f1"]
    state = json.loads(next((tmp_path / "ray_results").glob("*/experiment_state-*.json")).read_text())
    assert len(state["trial_data"]) == 2
    for trial_json, _ in state["trial_data"]:
        assert len(json.loads(trial_json)["trial_dirname_creator"]) < 500  # a closure over 2 cells: > 1,600
