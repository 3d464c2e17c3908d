"""Reused trial workers: a trial in a worker that ran a different trial first gives bitwise what it gives in a
fresh process, and each trial starts from the state a fresh worker has (seedlab.run.trial.reset_worker_state).
Real Ray Tune (one CPU, so one worker runs every trial in turn), real models, real data, a real MLflow store."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.needs_data]

HP = {"learning_rate": 1e-3, "batch_size": 16, "epochs": 1, "max_seq_length": 32}
DATA = {"max_train": 64, "max_eval": 40}
# Cells run in grid order (methods before seeds): a mixout trial (its masks draw from the global RNG, its
# modules replace the model's Linear layers) runs first in the worker, then the standard trial checked here.
SPEC_KW = dict(name="reuse", tasks=("rte",), models=("tiny",), methods=("mixout", "standard"), pretrain_seeds=(0,),
               finetune_seeds=(3,), hparams=HP, data=DATA)


@pytest.fixture(scope="module")
def reused(tmp_path_factory):
    import ray

    from seedlab.run.sweep import SweepSpec, run_sweep

    tmp = tmp_path_factory.mktemp("reuse")
    uri = f"sqlite:///{tmp}/mlflow.db"
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING")
    try:
        result = run_sweep(SweepSpec(**SPEC_KW), experiment="reuse", tracking_uri=uri, out=io.StringIO())
    finally:
        ray.shutdown()
    return {"uri": uri, "result": result, "tmp": tmp}


def test_one_worker_ran_both_trials_in_turn(reused):
    rows = reused["result"].trial_results
    assert reused["result"].finished == 2 and len(rows) == 2
    assert len({r["pid"] for r in rows}) == 1  # Tune's `pid`: the same worker process, reused
    assert {r["torch_threads"] for r in rows} == {1}  # what Ray sets for a 1-CPU trial (OMP_NUM_THREADS)


def test_a_reused_worker_gives_bitwise_the_predictions_of_a_fresh_process(reused, tmp_path):
    from seedlab.store.contract import KIND_TRIAL, client, find_runs

    store = client(reused["uri"])
    ordered = sorted(find_runs(store, [reused["result"].experiment_id], KIND_TRIAL), key=lambda r: r.info.start_time)
    # the different trial ran first in the one worker, and had ended before the checked one started
    assert [r.data.params["method"] for r in ordered] == ["mixout", "standard"]
    assert ordered[0].info.end_time <= ordered[1].info.start_time
    runs = {r.data.params["method"]: r for r in ordered}
    logged = pq.read_table(store.download_artifacts(runs["standard"].info.run_id, "predictions/validation.parquet",
                                                    str(tmp_path))).to_pydict()
    cell = {"task": "rte", "model": "tiny", "pretrain_seed": 0, "finetune_seed": 3, "hparams": HP, "data": DATA}
    script = ("import json, sys\nfrom seedlab.run.trial import execute_trial\n"
              f"o = execute_trial(json.loads({json.dumps(json.dumps(cell))}), device='cpu')\n"
              "print(json.dumps({'ids': o.instance_ids.tolist(), 'pred': o.predictions.tolist(), "
              "'probs': o.probs.astype(float).tolist()}))\n")
    # A fresh process with the thread count Ray gives a 1-CPU trial (the sum order of a matmul depends on it),
    # and an empty data cache beside the trained tokenizer: it tokenizes the task itself instead of reading the
    # encodings the worker cached, so a wrong cache entry cannot hide here.
    from seedlab.data.tokenizer import tokenizer_dir

    fresh_cache = tmp_path / "fresh-cache"
    (fresh_cache / "tokenizers").mkdir(parents=True)
    (fresh_cache / "tokenizers" / tokenizer_dir().name).symlink_to(tokenizer_dir())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEEDLAB_CACHE": str(fresh_cache)}
    fresh = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                      env=env).stdout.strip().splitlines()[-1])
    assert logged["instance_id"] == fresh["ids"]
    assert logged["prediction"] == fresh["pred"]
    # float32 in the parquet file and in the fresh process: equal bit for bit
    assert np.array_equal(np.array(logged["probs"], dtype=np.float32), np.array(fresh["probs"], dtype=np.float32))
    assert len(set(fresh["pred"])) > 1 or len(set(map(tuple, fresh["probs"]))) > 1  # not a degenerate output
    assert any((fresh_cache / "encodings").iterdir())  # the fresh process encoded the task itself


def test_reset_restores_what_a_trial_may_change():
    import torch

    from seedlab.run.trial import reset_worker_state

    reset_worker_state()  # records this process's start-up state
    fresh = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype(),
             torch.get_float32_matmul_precision())
    draws = torch.rand(3)
    torch.manual_seed(12345)
    torch.rand(10)
    torch.set_num_threads(max(1, fresh[0] + 1))
    torch.use_deterministic_algorithms(not fresh[1])
    torch.set_default_dtype(torch.float64)
    torch.set_float32_matmul_precision("medium")
    torch.set_grad_enabled(False)
    try:
        reset_worker_state()
        assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype(),
                torch.get_float32_matmul_precision()) == fresh
        assert torch.is_grad_enabled()
        assert torch.equal(torch.rand(3), draws)  # the RNG starts where it starts in a fresh process
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_grad_enabled(True)


def test_reset_releases_the_previous_trials_model():
    import gc
    import weakref

    from seedlab.run.trial import reset_worker_state
    from seedlab.train.models import resolve_model

    model = resolve_model("tiny", 0, 2, 0).model
    model.self_reference = [model]  # held only by a reference cycle once the trial lets go of it
    gone = weakref.ref(model)
    gc.disable()
    try:
        del model
        assert gone() is not None
        reset_worker_state()
        assert gone() is None
    finally:
        gc.enable()
