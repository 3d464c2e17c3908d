"""Fractional GPUs: four trials asking 0.25 GPU each run at once on one GPU, and each sees it.

A private Ray node is started with one logical GPU (`ray.init(num_gpus=1)`, allowed on a CPU machine: Ray
then assigns GPU ids and sets CUDA_VISIBLE_DEVICES for tasks and actors exactly as on a GPU host). The
trials get their resources from seedlab's real per-trial resource callable,
`SweepSpec(..., gpu_fraction={"tiny": 0.25}).resources(use_gpu=True)`, through `tune.with_resources`,
as `run_sweep` does. The trainable is a Tune function that records its start and end times,
CUDA_VISIBLE_DEVICES and `ray.get_gpu_ids()`, and waits (up to a minute) until all four have started:
so the test fails if the four cannot run at the same time. About 20-40 s.
"""

from __future__ import annotations

import json
import os
import time

import pytest

pytestmark = pytest.mark.cluster


def test_four_quarter_gpu_trials_share_one_gpu(tmp_path):
    ray = pytest.importorskip("ray")
    from ray import tune

    from seedlab.run.sweep import SweepSpec

    def trainable(config):  # defined here: Ray ships it by value (the test module is not importable there)
        import ray
        from ray import tune

        rendezvous = config["rendezvous"]
        me = f"{config['cell']['finetune_seed']}"
        started = time.time()
        with open(os.path.join(rendezvous, f"{me}.started"), "w") as fh:
            fh.write(str(started))
        deadline = started + 60
        while time.time() < deadline and len([f for f in os.listdir(rendezvous) if f.endswith(".started")]) < 4:
            time.sleep(0.1)
        seen_together = len([f for f in os.listdir(rendezvous) if f.endswith(".started")])
        time.sleep(1.0)
        record = {"cell": me, "start": started, "end": time.time(), "seen_together": seen_together,
                  "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                  "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "pid": os.getpid()}
        with open(os.path.join(rendezvous, f"{me}.json"), "w") as fh:
            json.dump(record, fh)
        tune.report({"seen_together": seen_together})

    spec = SweepSpec(name="gpu-share", tasks=("sst2",), models=("tiny",), pretrain_seeds=(0,),
                     finetune_seeds=(0, 1, 2, 3), gpu_fraction={"tiny": 0.25})
    resources = spec.resources(use_gpu=True)
    bundles = resources({"cell": spec.cells()[0]}).bundles
    assert bundles == [{"CPU": 1.0, "GPU": 0.25}]

    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    # address="local": a new private node even if another Ray runs on this machine. 4 logical CPUs so
    # that CPUs (1 per trial, the spec's default) are not what limits concurrency; 1 logical GPU.
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        assert ray.cluster_resources().get("GPU") == 1.0
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={"cell": tune.grid_search(spec.cells()), "rendezvous": str(rendezvous)},
            run_config=tune.RunConfig(name="gpu-share", storage_path=str(tmp_path / "ray_results"), verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()

    assert not [r.error for r in results if r.error], [r.error for r in results if r.error]
    records = [json.loads(p.read_text()) for p in sorted(rendezvous.glob("*.json"))]
    assert len(records) == 4
    print("\n" + "\n".join(f"[gpu] trial f{r['cell']}: pid {r['pid']} CUDA_VISIBLE_DEVICES={r['cuda_visible_devices']} "
                           f"ray.get_gpu_ids()={r['gpu_ids']} {r['start'] % 100:.1f}-{r['end'] % 100:.1f}s"
                           for r in records))
    # All four ran at the same time: each saw all four started, and their [start, end] intervals overlap.
    assert all(r["seen_together"] == 4 for r in records)
    assert max(r["start"] for r in records) < min(r["end"] for r in records)
    assert len({r["pid"] for r in records}) == 4
    # Each sees the one GPU: Ray assigned GPU 0 to every 0.25 share and exported it.
    assert all(r["cuda_visible_devices"] == "0" for r in records)
    assert all(r["gpu_ids"] == ["0"] for r in records)
