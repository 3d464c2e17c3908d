"""Faults during a sweep on the local cluster (tests/cluster/conftest.py `stack`: head + one worker node,
one CPU each, MLflow server). Each test runs the real sweep command,

    python sweeps/bert_sizes.py --profile smoke --models mini --pretrain-seeds 0 --finetune-seeds ...

started directly on this machine with RAY_ADDRESS set to the cluster's GCS address, breaks something from
outside by PID, and checks the experiment ends with exactly one FINISHED run per grid cell:

a. a trial's worker process is SIGKILLed while it trains: Tune's FailureConfig retries it;
b. the sweep driver is SIGKILLed after some trials finished: rerunning the command marks the killed launch's
   sweep run KILLED (with a note naming the rerun's) and runs only the rest;
c. the MLflow server is stopped while trials run and restarted ~30 s later: the trials keep their
   results locally, wait, and log them when it is back (no trial fails, nothing is duplicated);
d. the worker node's raylet is SIGKILLed while it runs a trial: the trial is rescheduled on the head.

Trials run in reused workers (Tune's reuse_actors): a worker killed mid-trial is replaced by a fresh one.
Each takes 1.5-3 minutes on 2 cores.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from _stack import (Driver, alive, descendants, job_of, kept_results, proc_table, smoke_cells, stack_of,
                    trial_processes,
                    summarize_runs, trial_cell, training, unique, wait_for)

# the smoke profile: WikiText-2 pretraining, then SST-2
pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.needs_data("glue/SST-2", "corpus/wikitext-2")]

# mini, not tiny: a tiny smoke trial trains for ~8 s, and in a clean CI run the test's polls (each a `ray list`
# call) missed a trial on the worker node that had started and finished in between; mini trains for ~45 s.
MODEL = "mini"
SMOKE = ["--profile", "smoke", "--models", MODEL, "--pretrain-seeds", "0"]


def _start(stack, tmp_path, experiment: str, seeds: tuple[int, ...], name: str = "driver") -> tuple[Driver, str]:
    driver = Driver(stack, [*SMOKE, "--finetune-seeds", ",".join(map(str, seeds)), "--experiment", experiment],
                    tmp_path / f"{name}.log")
    def connected():
        assert driver.proc.poll() is None, f"the sweep driver exited early:\n{driver.output[-4000:]}"
        return job_of(stack, driver.proc.pid)

    return driver, wait_for("the sweep driver to connect to the cluster", connected, 180, every=2)


# The smoke profile pretrains its mini seed family first (a `run_pretrain_trial`, in the experiment
# `<experiment>-pretrain`); the helpers below look at the fine-tuning trials (`run_trial`) only.


def _training_trials(stack, nodes=("ray-head", "ray-worker-1")) -> list[int]:
    """Pids of the fine-tuning trials now in their training loop on these nodes (found in /proc)."""
    return [p for n in nodes for p in trial_processes(stack.pid(n)) if training(p)]


def _assert_one_finished_run_per_cell(stack, experiment: str, cells: dict[str, str]) -> dict:
    runs = stack.runs(experiment)
    summary = summarize_runs(runs)
    assert summary["by_name"] == {name: ["FINISHED"] for name in cells}, summary["by_name"]
    assert {key: len(names) for key, names in summary["finished_keys"].items()} == {k: 1 for k in cells.values()}
    return {_tags(r)["mlflow.runName"]: r for r in runs}


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_a_trial_killed_mid_training_is_retried(stack, tmp_path):
    experiment, cells = unique("fault-trial-killed"), smoke_cells((0, 1), MODEL)
    driver, job = _start(stack, tmp_path, experiment, (0, 1))
    pid = wait_for("a trial training on the worker node", lambda: _training_trials(stack, ("ray-worker-1",)), 300,
                   every=0.5)[0]
    assert pid in descendants(stack.pid("ray-worker-1")), "the trial process is not one of this stack's"
    cell = trial_cell(pid)
    training_seen = time.time()
    time.sleep(1.0)
    frames = stack_of(pid)
    assert "finetune" in frames, f"the trial left its training loop within a second:\n{frames}"
    os.kill(pid, signal.SIGKILL)  # mid-training: its stack showed seedlab.train.finetune.finetune a moment ago
    killed = time.time()
    assert not [r for r in stack.runs(experiment) if _tags(r)["mlflow.runName"] == cell], \
        "the trial had already logged its run"

    assert driver.wait(300) == 0, driver.output[-5000:]
    assert "finished: 2 trials logged, 0 failed" in driver.output
    runs = _assert_one_finished_run_per_cell(stack, experiment, cells)
    assert not alive(pid)
    # The killed cell's one run was created after the kill: by the retry, not the killed attempt.
    assert int(runs[cell]["info"]["start_time"]) / 1000 > killed
    trained = float({m["key"]: m["value"] for m in runs[cell]["data"]["metrics"]}["time_train_s"])
    print(f"\n[fault a] killed {cell} {killed - training_seen:.1f}s into its training loop; the retry trained "
          f"{trained:.1f}s and logged; driver took {time.time() - driver.started:.0f}s")


def test_b_driver_killed_mid_sweep_then_rerun_finishes_only_the_rest(stack, tmp_path):
    experiment, seeds = unique("fault-driver-killed"), (0, 1, 2, 3)
    cells = smoke_cells(seeds, MODEL)
    driver, job = _start(stack, tmp_path, experiment, seeds)
    wait_for("2 of 4 trials to finish", lambda: re.search(r"done [23]/4", driver.output), 300)
    driver.kill(signal.SIGKILL)
    killed_at = time.time()
    # Its trials die with it (Ray kills the actors of a dead driver).
    wait_for("the killed driver's trials to stop",
             lambda: not trial_processes(stack.pid("ray-head")) + trial_processes(stack.pid("ray-worker-1")), 120,
             every=2)
    before = {n: r["info"]["run_id"] for n, r in _finished(stack, experiment).items()}
    assert 2 <= len(before) < 4, before

    rerun, job2 = _start(stack, tmp_path, experiment, seeds, name="rerun")
    assert rerun.wait(300) == 0, rerun.output[-5000:]
    assert f"4 cells, {len(before)} already finished, {4 - len(before)} to run" in rerun.output
    runs = _assert_one_finished_run_per_cell(stack, experiment, cells)
    assert {n: runs[n]["info"]["run_id"] for n in before} == before, "a finished cell was run again"
    sweeps = sorted(stack.runs(experiment, kind="sweep"), key=lambda r: int(r["info"]["start_time"]))
    assert [r["info"]["status"] for r in sweeps] == ["KILLED", "FINISHED"], sweeps
    orphan, rerun_run = sweeps
    assert f"the rerun {rerun_run['info']['run_id']}" in _tags(orphan)["mlflow.note.content"]
    print(f"\n[fault b] driver killed after {killed_at - driver.started:.0f}s with {len(before)} runs logged; "
          f"the rerun ran {4 - len(before)} in {time.time() - rerun.started:.0f}s")


def _finished(stack, experiment: str) -> dict[str, dict]:
    out = {}
    for r in stack.runs(experiment):
        if r["info"]["status"] == "FINISHED":
            out[_tags(r)["mlflow.runName"]] = r
    return out


def test_c_tracking_server_down_during_trials(stack, tmp_path):
    experiment, cells = unique("fault-mlflow-down"), smoke_cells((0, 1), MODEL)
    driver, job = _start(stack, tmp_path, experiment, (0, 1))
    # Stop the server once both trials are training: past their skip check and the checkpoint download
    # (both talk to the server), with only compute left before they log.
    pids = wait_for("both trials to train", lambda: len(t := _training_trials(stack)) == 2 and t, 300, every=0.5)
    logged_before = set(summarize_runs(stack.runs(experiment))["by_name"])
    mlflow = stack.pid("mlflow")
    os.killpg(mlflow, signal.SIGTERM)  # the server leads its own process group (up.sh starts it under setsid)
    wait_for("the MLflow server to stop", lambda: not alive(mlflow) and not stack.mlflow_healthy(), 60, every=0.5)
    down_at = time.time()
    caught = {name: key for name, key in cells.items() if name not in logged_before}
    assert caught, "both trials logged before the server went down"
    # The trials finish computing while the server is down: their results are written locally, and they
    # wait for the server (no trial fails, the driver keeps running).
    wait_for("the trials to keep their results locally",
             lambda: all(kept_results(k, since=down_at) for k in caught.values()), 240, every=1)
    kept = [str(kept_results(k, since=down_at)[0]) for k in caught.values()]
    time.sleep(max(0.0, down_at + 30 - time.time()))
    assert all(alive(p) for p in pids), "a trial process died while the server was down"
    assert driver.proc.poll() is None, driver.output[-3000:]
    outage = time.time() - down_at
    stack.up()  # restarts only what is down: the MLflow server
    up_at = time.time()
    assert stack.mlflow_healthy()

    assert driver.wait(300) == 0, driver.output[-5000:]
    assert "finished: 2 trials logged, 0 failed" in driver.output
    runs = _assert_one_finished_run_per_cell(stack, experiment, cells)
    for name in caught:  # logged by the attempt that was running during the outage, not by a retry
        created = int(runs[name]["info"]["start_time"]) / 1000
        assert down_at < created < up_at, f"{name} was not created while the server was down"
    print(f"\n[fault c] MLflow down {outage:.0f}s (+{up_at - down_at - outage:.0f}s restart) while "
          f"{len(caught)} trial(s) finished computing; they kept {kept} and logged after it came back; "
          f"driver took {time.time() - driver.started:.0f}s")


def test_d_worker_node_lost_mid_trial(stack, tmp_path):
    experiment, cells = unique("fault-node-lost"), smoke_cells((0, 1), MODEL)
    nodes = stack.nodes()
    worker_node, head_node = nodes["worker"]["node_id"], nodes["head"]["node_id"]
    driver, job = _start(stack, tmp_path, experiment, (0, 1))
    try:
        victim = wait_for("a trial training on the worker node",
                          lambda: _training_trials(stack, ("ray-worker-1",)), 300, every=0.5)[0]
        cell = trial_cell(victim)
        node_root = stack.pid("ray-worker-1")
        table = proc_table()
        raylets = [p for p in descendants(node_root, table) if "/ray/raylet/raylet " in table[p][1]]
        assert len(raylets) == 1, raylets
        os.kill(raylets[0], signal.SIGKILL)
        lost_at = time.time()

        assert driver.wait(300) == 0, driver.output[-5000:]
        assert "finished: 2 trials logged, 0 failed" in driver.output
        runs = _assert_one_finished_run_per_cell(stack, experiment, cells)
        assert not alive(victim)
        states = {n["node_id"]: n["state"] for n in stack.ray_list("nodes")}
        assert states[worker_node] == "DEAD"
        # The lost trial's run was created after the node died, on the head (the only node left).
        assert int(runs[cell]["info"]["start_time"]) / 1000 > lost_at
        assert _tags(runs[cell])["seedlab.ray_node_id"] == head_node
        print(f"\n[fault d] worker raylet killed {lost_at - driver.started:.0f}s into the sweep; it finished "
              f"{time.time() - lost_at:.0f}s later with {cell} rescheduled on the head")
    finally:
        driver.kill()
        # Bring the worker node back for whatever runs next (up.sh starts what is not running).
        stack.script("stop_pid ray-worker-1 30")
        stack.up()
        assert len(stack.nodes()) == 2
