"""Per-trial overhead of a seedlab sweep, and training throughput against a bare PyTorch loop.

    python benchmarks/bench_trial_overhead.py [--trials 10] [--max-train 512] [--concurrency 2]

1. Throughput: the same tiny BERT, the same batches, the same optimiser: `seedlab.train.finetune.finetune`
   against a bare loop written here. Printed as a ratio (seedlab / bare), both measured in this run.
2. Overhead: a real sweep (`run_sweep`: Ray Tune + an MLflow SQLite store in a temp dir) of `--trials` tiny
   trials, `--concurrency` at a time. A trial's wall time is read from the store: the time between the end
   of its run and the end of the run that freed its slot (`concurrency` runs earlier), so it holds
   everything a trial costs (scheduling, worker start or reset, setup, training, evaluation, logging). The
   first `concurrency` trials also pay for starting their workers: reported apart ("first per slot").
   Fixed overhead per trial = median wall time per trial - median (train + eval) of the same trials.

The last line is the figure: `fixed overhead per trial: X.XX s`. The script uses only seedlab's public
`run_sweep` and the store, so it measures older versions of seedlab too (PYTHONPATH=<their checkout>).
"""

import argparse
import io
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HP = {"learning_rate": 1e-3, "batch_size": 32, "epochs": 2, "max_seq_length": 64}


def bare_loop(model, data, hp, order_seed):
    """The textbook loop: shuffle, pad, forward, loss, backward, step. No scheduler, no clipping, no logging."""
    # the same optimiser as seedlab's (fused AdamW: seedlab.train.finetune.adamw), so the ratio is the loop's
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, fused=True)
    generator = torch.Generator().manual_seed(order_seed)
    steps = math.ceil(len(data.labels) / hp.batch_size) * int(hp.epochs)
    done, start = 0, time.perf_counter()
    while done < steps:
        perm = torch.randperm(len(data.labels), generator=generator).tolist()
        for i in range(0, len(perm), hp.batch_size):
            index = perm[i: i + hp.batch_size]
            logits = model(**data.batch(index)).logits
            loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(data.labels[index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done >= steps:
                break
    return time.perf_counter() - start, steps


def throughput(max_train: int, repeats: int = 3):
    from seedlab.train.finetune import Hyperparameters, encode, finetune
    from seedlab.train.models import resolve_model
    from seedlab.data.tasks import load_task

    torch.set_num_threads(1)
    hp = Hyperparameters(**HP)
    train, _ = load_task("sst2", max_train=max_train)
    ours, bare = [], []
    for r in range(repeats):
        resolved = resolve_model("tiny", 0, 2, 0)
        data = encode(train, resolved.tokenizer, hp.max_seq_length)
        result = finetune(resolved.model, data, hp, order_seed=r, dropout_seed=r)
        ours.append(len(data.labels) * hp.epochs / result.train_seconds)
        resolved = resolve_model("tiny", 0, 2, 0)
        seconds, _ = bare_loop(resolved.model.train(), data, hp, order_seed=r)
        bare.append(len(data.labels) * hp.epochs / seconds)
    return float(np.median(ours)), float(np.median(bare))


def overhead(trials: int, concurrency: int, max_train: int, cpus: int) -> dict:
    import ray

    from seedlab.run.sweep import SweepSpec, run_sweep
    from seedlab.store.contract import KIND_TRIAL, client, find_runs

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        spec = SweepSpec(name="bench", tasks=("sst2",), models=("tiny",), pretrain_seeds=tuple(range(trials)),
                         finetune_seeds=(0,), hparams=HP, data={"max_train": max_train, "max_eval": 872})
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
        try:
            started = time.time()
            result = run_sweep(spec, "bench", uri, max_concurrent=concurrency, out=io.StringIO())
        finally:
            ray.shutdown()
        assert result.finished == trials and result.failed == 0, result
        runs = find_runs(client(uri), [result.experiment_id], KIND_TRIAL)
    reported = {r["run_id"]: r for r in result.trial_results}  # Tune's result of each trial: its own timings
    ends = sorted(((run.info.end_time / 1000, reported[run.info.run_id]) for run in runs), key=lambda e: e[0])
    # trial k's slot was freed by trial k - concurrency (the first `concurrency` trials start with the sweep)
    walls = [end - (ends[k - concurrency][0] if k >= concurrency else started) for k, (end, _) in enumerate(ends)]
    steady, first = ends[concurrency:], ends[:concurrency]

    def median(key, rows):
        values = [r[key] for _, r in rows if key in r]
        return float(np.median(values)) if values else float("nan")

    useful = [r["time_train_s"] + r["time_eval_s"] for _, r in steady]
    inside = ("time_reset_s", "time_skip_check_s", "time_trial_s")  # reset and skip check: absent before reuse
    between = [w - sum(r.get(k, 0.0) for k in inside) for w, (_, r) in zip(walls[concurrency:], steady)]
    return {"wall": float(np.median(walls[concurrency:])), "useful": float(np.median(useful)),
            "setup": median("time_setup_s", steady), "log": median("time_log_s", steady),
            "reset": median("time_reset_s", steady), "skip_check": median("time_skip_check_s", steady),
            "between": float(np.median(between)), "first_wall": float(np.mean(walls[:concurrency])),
            "first_setup": float(np.mean([r["time_setup_s"] for _, r in first]))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--max-train", type=int, default=512)
    parser.add_argument("--concurrency", default="2", help="comma-separated concurrent trials (default 2)")
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs of the local Ray runtime (default 2)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs (load average {load:.1f}), torch {torch.__version__}; model tiny "
          f"(L2/H128), SST-2, {args.max_train} train examples, {HP}")
    ours, bare = throughput(args.max_train)
    print(f"\ntraining throughput (examples/s, 1 thread, median of 3): seedlab {ours:.1f}, bare loop {bare:.1f}, "
          f"ratio seedlab/bare = {ours / bare:.2f}")
    print("\nmedians over the trials after the first per slot, seconds (between: Ray and Tune, outside the trial "
          "function; reset and skip check: at the trial's start):")
    print("concurrency  trials  wall/trial  train+eval  fixed overhead, of which: setup  log  reset  skip check  "
          "between  | first per slot: wall  setup")
    fixed = {}
    for concurrency in levels:
        m = overhead(args.trials, concurrency, args.max_train, args.cpus)
        fixed[concurrency] = m["wall"] - m["useful"]
        parts = "  ".join(f"{m[k]:>5.2f}" for k in ("setup", "log", "reset", "skip_check", "between"))
        print(f"{concurrency:>11}  {args.trials:>6}  {m['wall']:>10.2f}  {m['useful']:>10.2f}  {fixed[concurrency]:>14.2f}"
              f" ({parts})  |  {m['first_wall']:>19.2f}  {m['first_setup']:>5.2f}")
    print(f"fixed overhead per trial: {fixed.get(2, fixed[levels[-1]]):.2f} s")


if __name__ == "__main__":
    main()
