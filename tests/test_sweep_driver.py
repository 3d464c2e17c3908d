"""A sweep driver that survives itself, with real processes: a sweep file run as a user runs it (local Ray,
a SQLite store), interrupted from outside by PID, as tests/cluster/test_sweep_faults.py does on the cluster.

A. Ctrl-C: SIGINT to the driver's process group (what a terminal sends) once a trial has finished: the
   driver stops its trials, marks its sweep run KILLED with a note, prints how to resume, exits 130.
B. The rerun is SIGKILLed once it has logged a trial: its sweep run is left RUNNING.
C. The next rerun marks B's run KILLED with a note naming its own run, runs only the missing cells and
   finishes: exactly one FINISHED run per cell, every earlier result kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "cluster"))
from _stack import descendants, proc_table, wait_for  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.needs_data]

REPO = Path(__file__).resolve().parents[1]
SEEDS = tuple(range(8))
SWEEP_FILE = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from seedlab.run.sweep import SweepSpec, sweep_main

PROFILES = {{"p": SweepSpec(name="drv", tasks=("rte",), models=("tiny",), pretrain_seeds=(0,), finetune_seeds={SEEDS!r},
                           hparams={{"learning_rate": 1e-3, "batch_size": 16, "epochs": 2, "max_seq_length": 48}},
                           data={{"max_train": 320, "max_eval": 60}})}}
sys.exit(sweep_main(PROFILES, default_experiment="drv"))
"""


class Launch:
    def __init__(self, tmp: Path, uri: str, name: str):
        self.log = tmp / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_TRACKING"))}
        env.update(PYTHONPATH=str(REPO), SEEDLAB_RAY_STORAGE=str(tmp / "ray_results"))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, str(tmp / "sweep.py"), "--profile", "p", "--experiment",
                                          "drv", "--tracking-uri", uri], cwd=tmp, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tree(self) -> set[int]:
        return descendants(self.proc.pid, proc_table())

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the driver still ran after {timeout:.0f}s:\n{self.output[-4000:]}") from None


def _runs(uri: str, kind: str):
    from seedlab.store.contract import client, find_runs

    store = client(uri)
    experiment = store.get_experiment_by_name("drv")
    return [] if experiment is None else find_runs(store, [experiment.experiment_id], kind, status=None)


def _finished(uri: str) -> dict[str, str]:
    """run name -> run id of the FINISHED trial runs."""
    return {r.data.tags["mlflow.runName"]: r.info.run_id for r in _runs(uri, "trial") if r.info.status == "FINISHED"}


def _gone(pids: set[int]) -> bool:
    live = proc_table()
    return not [p for p in pids if p in live]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    from seedlab.run.trial import run_name
    from seedlab.run.sweep import SweepSpec

    tmp = tmp_path_factory.mktemp("driver")
    (tmp / "sweep.py").write_text(SWEEP_FILE)
    uri = f"sqlite:///{tmp}/mlflow.db"
    out = {"uri": uri, "cells": {run_name(c) for c in SweepSpec("drv", ("rte",), ("tiny",), (0,), SEEDS).cells()}}

    # A: Ctrl-C once a trial has finished
    a = Launch(tmp, uri, "a")
    wait_for("a trial to finish", lambda: a.proc.poll() is None and len(_finished(uri)) >= 1 or a.proc.poll(), 600)
    assert a.proc.poll() is None, a.output[-4000:]
    tree = a.tree()
    os.killpg(a.proc.pid, signal.SIGINT)
    out["a_rc"], out["a_output"] = a.wait(180), a.output
    out["a_tree_gone"] = bool(wait_for("A's processes to exit", lambda: _gone(tree), 120, every=1))
    out["after_a"] = _finished(uri)

    # B: SIGKILL once it has logged one more trial
    b = Launch(tmp, uri, "b")
    wait_for("B to log a trial", lambda: len(_finished(uri)) > len(out["after_a"]) or b.proc.poll() is not None, 600)
    assert b.proc.poll() is None, b.output[-4000:]
    tree = b.tree()
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(30)
    wait_for("B's processes (its local Ray) to exit", lambda: _gone(tree), 120, every=1)
    out["after_b"] = _finished(uri)
    out["b_output"] = b.output

    # C: to the end
    c = Launch(tmp, uri, "c")
    out["c_rc"], out["c_output"] = c.wait(900), c.output
    out["after_c"] = _finished(uri)
    out["sweep_runs"] = _runs(uri, "sweep")
    out["trial_runs"] = _runs(uri, "trial")
    return out


def _sweep_runs(scenario) -> dict:
    """A's, B's and C's sweep runs, in the order they started; each launch printed its run's id."""
    runs = sorted(scenario["sweep_runs"], key=lambda r: r.info.start_time)
    assert len(runs) == 3, [r.info.run_id for r in runs]
    named = dict(zip("abc", runs))
    for launch in "ac":
        assert f"sweep run {named[launch].info.run_id}\n" in scenario[f"{launch}_output"]
    return named


def test_ctrl_c_stops_the_trials_marks_the_run_and_says_how_to_resume(scenario):
    assert scenario["a_rc"] == 130, scenario["a_output"][-4000:]
    assert scenario["a_tree_gone"]  # its trial workers and local Ray are gone
    assert "resume with: " in scenario["a_output"] and "--profile p" in scenario["a_output"]
    assert 1 <= len(scenario["after_a"]) < len(SEEDS)
    run = _sweep_runs(scenario)["a"]
    assert run.info.status == "KILLED"
    assert "Ctrl-C" in run.data.tags["mlflow.note.content"]


def test_the_rerun_marks_the_killed_drivers_run_and_names_itself(scenario):
    runs = _sweep_runs(scenario)
    killed, rerun = runs["b"], runs["c"]
    assert killed.info.status == "KILLED"
    assert f"the rerun {rerun.info.run_id}" in killed.data.tags["mlflow.note.content"]
    assert f"the sweep run {killed.info.run_id} was left RUNNING" in scenario["c_output"]
    assert "Ctrl-C" in runs["a"].data.tags["mlflow.note.content"]  # A's run was not taken for an orphan
    assert rerun.info.status == "FINISHED"
    assert not [r for r in scenario["sweep_runs"] + scenario["trial_runs"] if r.info.status == "RUNNING"]


def test_the_rerun_runs_only_the_missing_cells_once_each(scenario):
    assert scenario["c_rc"] == 0, scenario["c_output"][-4000:]
    before = scenario["after_b"]
    assert f"{len(SEEDS)} cells, {len(before)} already finished, {len(SEEDS) - len(before)} to run" in \
        scenario["c_output"]
    assert set(scenario["after_c"]) == scenario["cells"]
    assert {n: scenario["after_c"][n] for n in before} == before  # no finished cell ran again
    finished = [r.data.tags["seedlab.trial_key"] for r in scenario["trial_runs"] if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == len(SEEDS)
