"""Every slot of the cluster runs trials: with 2 CPU slots, a sweep's trials run two at a time from its start, in
two reused workers. Tune allows one pending trial with a custom searcher (seedlab's cell order), so without
`seedlab.run.ray_runtime.pending_trials` the second worker starts only once the first is running, and a slot's
actor is evicted whenever it finishes with no trial pending. Real Ray Tune (2 CPUs), a real MLflow store; the
training is replaced by a fixed wait, so that the schedule, not the model, decides the timings."""

import io
import os
import sys
import time

import pytest

pytestmark = pytest.mark.integration

TRIAL_SECONDS = 4.0


def waiting_outcome(cell, tracking_uri=None):
    """A trial's outcome after TRIAL_SECONDS of doing nothing, with the timestamps it ran between."""
    import time

    import numpy as np

    from seedlab.run.trial import TrialOutcome, resolve_cell

    began = time.time()
    time.sleep(TRIAL_SECONDS)
    c = resolve_cell(cell)
    labels = np.array([0, 1, 1, 0])
    probs = np.full((4, 2), 0.5, dtype=np.float32)
    params = {k: c[k] for k in ("task", "model", "method", "pretrain_seed", "finetune_seed")}
    return TrialOutcome(params, {"eval_accuracy": 0.5, "began": began, "ended": time.time()}, [(1, 0.7)],
                        {"setup": 0.0, "train": 0.0, "eval": 0.0}, np.array([f"dev-{i}" for i in range(4)]),
                        labels, labels, probs)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    import ray
    from ray import cloudpickle

    from seedlab.run.sweep import SweepSpec, run_sweep

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    tmp = tmp_path_factory.mktemp("slots")
    spec = SweepSpec(name="slots", tasks=("sst2",), models=("tiny",), pretrain_seeds=(0,), finetune_seeds=tuple(range(6)),
                     hparams={"epochs": 1}, data={"max_train": 8, "max_eval": 4})
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        with pytest.MonkeyPatch.context() as env:
            env.delenv("TUNE_MAX_PENDING_TRIALS_PG", raising=False)  # Tune's default, which the sweep replaces
            called = time.time()
            result = run_sweep(spec, experiment="slots", tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                               out=io.StringIO(), execute=waiting_outcome)
    finally:
        ray.shutdown()
    return result, called


def test_trials_ran_two_at_a_time_in_two_workers(swept):
    result, called = swept
    rows = result.trial_results
    assert result.finished == 6 and result.failed == 0
    assert len({r["pid"] for r in rows}) == 2
    spans = sorted((r["began"], r["ended"]) for r in rows)
    # Both workers started together, so the second trial began while the first ran. With one pending trial the
    # second worker is asked for only once the first is running, a whole worker start (~7 s here) later, and
    # the first worker, free again, takes the second trial first.
    assert spans[1][0] < spans[0][1], (spans[0][0] - called, spans)
    for i, (began, ended) in enumerate(spans):  # no trial ran alone: a slot was never left empty for long
        assert any(b < ended and began < e for j, (b, e) in enumerate(spans) if j != i), spans
    assert spans[-1][1] - spans[0][0] < 4.5 * TRIAL_SECONDS, spans  # 3 rounds of two, not 6 trials in turn


def test_the_setting_is_the_sweeps_alone(swept):
    assert "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ  # set for the run, removed after it


def test_trial_slots_count_what_a_trial_takes():
    import ray

    from seedlab.run.ray_runtime import trial_slots

    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="WARNING")
    try:
        assert trial_slots(1.0) == 4
        assert trial_slots(3.0) == 1
        assert trial_slots(8.0) == 1  # larger than the cluster: one, which Tune then reports as unschedulable
        assert trial_slots(1.0, gpu_per_trial=0.25) == 4
        assert trial_slots(0.5, gpu_per_trial=0.125) == 8
        assert trial_slots(1.0, gpu_per_trial=0.5) == 2
    finally:
        ray.shutdown()
