"""Per-trial overhead of a seedlab sweep, and training throughput against a bare PyTorch loop.

    python benchmarks/bench_trial_overhead.py [--trials 4] [--max-train 512]

1. Throughput: the same tiny BERT, the same batches, the same optimiser: `seedlab.train.finetune.finetune`
   against a bare loop written here. Printed as a ratio (seedlab / bare), both measured in this run.
2. Overhead: a real sweep (Ray Tune + MLflow SQLite store in a temp dir) at 1 and at 2 concurrent trials.
   The share of trial wall time spent outside training and evaluation = 1 - (train + eval) / (wall x
   concurrency / trials), split into setup (data, tokenizer, model construction), MLflow logging (with the
   artifact upload) and the rest (Ray scheduling, worker start, process overhead).
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate)
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


def overhead(trials: int, concurrency: int, max_train: int):
    import ray

    from seedlab.run.sweep import SweepSpec, run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        spec = SweepSpec(name="bench", tasks=("sst2",), models=("tiny",), pretrain_seeds=tuple(range(trials)),
                         finetune_seeds=(0,), hparams=HP, data={"max_train": max_train, "max_eval": 872})
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        try:
            result = run_sweep(spec, "bench", f"sqlite:///{tmp}/mlflow.db", max_concurrent=concurrency,
                               out=io.StringIO())
        finally:
            ray.shutdown()
    rows = result.trial_results
    per_trial_wall = result.wall_seconds * concurrency / trials
    mean = {k: float(np.mean([r[f"time_{k}_s"] for r in rows])) for k in ("setup", "train", "eval", "log", "trial")}
    return per_trial_wall, mean


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--max-train", type=int, default=512)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}; model tiny (L2/H128), SST-2, "
          f"{args.max_train} train examples, {HP}")
    ours, bare = throughput(args.max_train)
    print(f"\ntraining throughput (examples/s, 1 thread, median of 3): seedlab {ours:.1f}, bare loop {bare:.1f}, "
          f"ratio seedlab/bare = {ours / bare:.2f}")
    print("\nconcurrency  trials  wall/trial(s)  train+eval(s)  setup(s)  log(s)  other(s)  overhead share")
    for concurrency in (1, 2):
        wall, m = overhead(args.trials, concurrency, args.max_train)
        useful = m["train"] + m["eval"]
        other = max(0.0, wall - m["trial"])
        print(f"{concurrency:>11}  {args.trials:>6}  {wall:>13.1f}  {useful:>13.1f}  {m['setup']:>8.1f}  "
              f"{m['log']:>6.2f}  {other:>8.1f}  {1 - useful / wall:>14.1%}")


if __name__ == "__main__":
    main()
