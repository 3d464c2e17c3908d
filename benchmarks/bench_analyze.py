"""The whole `seedlab analyze` computation at Zhong et al. scale, predictions already local.

    python benchmarks/bench_analyze.py [--instances 10000]

5 sizes x 10 pretraining seeds x 5 fine-tuning seeds x 10,000 instances (250 runs) from the simulator,
through `seedlab.analysis.analyze.analyze_table` (every section: summaries, Du & Nguyen measures and the
sub-sampling check, Zhong et al. decomposition / decay bounds for all 20 ordered pairs / momentum for all
10 triples, Multi-Bootstrap B=1000 per model and for one compared pair under three resampling schemes).
Reports wall time, peak RSS and the Python-heap peak. Baseline in the same run: the same analysis on a
tenth of the instances, to show how time scales with m.
"""

import argparse
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from seedlab.analysis.analyze import AnalysisOptions, _jsonable, analyze_table  # noqa: E402
from seedlab.stats.simulate import simulate_experiment  # noqa: E402

SIZES = ("mini", "small", "medium", "base", "large")


def run(m: int, trace: bool):
    table, _ = simulate_experiment(n_models=5, model_names=SIZES, P=10, F=5, m=m, n_classes=3,
                                   ability=np.linspace(0.0, 1.2, 5), task="mnli", rng=np.random.default_rng(0))
    # Zhong et al. analyse predictions only (no probabilities): drop the simulator's probs to match.
    options = AnalysisOptions(compare=("mini", "large"), n_bootstrap=1000, seed=0)
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    result = analyze_table("mnli", table, options)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    size = len(json.dumps(_jsonable(result)))
    return seconds, peak, size, table.predictions.nbytes


def from_local_store(m: int):
    """Log the simulated runs into a temporary local MLflow store (not timed), then time the loader and the
    analysis together: what `seedlab analyze` does once the predictions are local."""
    import tempfile

    from seedlab.analysis.analyze import analyze
    from seedlab.analysis.loader import load_experiment
    from seedlab.store.predictions import write_predictions
    from seedlab.store.contract import client, get_or_create_experiment, log_run

    table, _ = simulate_experiment(n_models=5, model_names=SIZES, P=10, F=5, m=m, n_classes=3,
                                   ability=np.linspace(0.0, 1.2, 5), task="mnli", rng=np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        store = client(uri)
        exp = get_or_create_experiment(store, "zhong-scale", uri)
        for i in range(len(table.run_ids)):
            path = write_predictions(f"{tmp}/p/{i}/validation.parquet", table.instance_ids, table.labels,
                                     table.predictions[i], table.probs[i])
            params = {"task": "mnli", "model": table.model[i], "pretrain_seed": int(table.pretrain_seed[i]),
                      "finetune_seed": int(table.finetune_seed[i])}
            log_run(store, exp, f"mnli/{table.model[i]}/p{params['pretrain_seed']}/f{params['finetune_seed']}",
                    params, [], {"seedlab.kind": "trial", "seedlab.trial_key": f"k{i}"}, {"predictions": str(path)})
        start = time.perf_counter()
        loaded = load_experiment("zhong-scale", uri)
        loaded_at = time.perf_counter()
        analyze(loaded, AnalysisOptions(compare=("mini", "large"), n_bootstrap=1000, seed=0))
        done = time.perf_counter()
    return loaded_at - start, done - loaded_at


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10_000)
    args = parser.parse_args()
    small = run(args.instances // 10, trace=False)
    full = run(args.instances, trace=False)  # timed without tracemalloc, which slows numpy allocation
    traced = run(args.instances, trace=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("design: 5 sizes x 10 pretraining seeds x 5 fine-tuning seeds = 250 runs; 3 classes")
    print(f"m={args.instances // 10:>6}: analyze {small[0]:6.1f} s")
    print(f"m={args.instances:>6}: analyze {full[0]:6.1f} s  (x{full[0] / small[0]:.1f} for 10x the instances)")
    print(f"predictions array {full[3] / 2**20:.1f} MiB; Python-heap peak during analyze {traced[1] / 2**20:.1f} MiB; "
          f"process peak RSS {rss:.0f} MiB; JSON {full[2] / 2**20:.1f} MiB")
    load_s, analyze_s = from_local_store(args.instances)
    total = load_s + analyze_s
    print(f"from a local MLflow store (250 runs): load {load_s:.1f} s + analyze {analyze_s:.1f} s = {total:.1f} s")
    print("target: the whole analyze under 60 s on 2 cores ->", "met" if total < 60 else "NOT met")


if __name__ == "__main__":
    main()
