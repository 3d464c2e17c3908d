"""Benchmark: vectorised Multi-Bootstrap vs the straightforward loop reference.

Setting: B = 1000 iterations, paired, accuracy, 10 pretraining seeds x 5 fine-tuning seeds x 10,000
instances per arm (100 runs in all). The loop reference is too slow to run all 1000 iterations in a
benchmark, so it runs the first ``--loop-iters`` iterations of the same RNG stream and its time is scaled
per iteration (the output says so). Before timing, both are run on a small case and must agree exactly.

    python benchmarks/bench_multibootstrap.py [--loop-iters 20] [--repeats 5] [--n-bootstrap 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

# the loop oracle lives with the tests that hold the vectorised version to it
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "stats"))
from loop_reference import multibootstrap_loop  # noqa: E402

from seedlab.stats.multibootstrap import multibootstrap  # noqa: E402


def make_data(P=10, F=5, m=10_000, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, m)
    p_easy = rng.beta(4, 1.5, m)  # per-instance probability of a correct prediction

    def arm(shift):
        seed_eff = rng.normal(0, 0.03, (P, 1, 1))
        prob = np.clip(p_easy[None, None, :] + shift + seed_eff, 0, 1)
        correct = rng.random((P, F, m)) < prob
        preds = np.where(correct, labels, 1 - labels).reshape(P * F, m)
        return preds, np.repeat(np.arange(P), F)

    pb, sb = arm(0.0)
    pi, si = arm(0.01)
    return labels, pb, sb, pi, si


def check_equal_small():
    labels, pb, sb, pi, si = make_data(P=4, F=3, m=500, seed=1)
    for score in ("accuracy", "f1", "mcc"):
        for paired in (True, False):
            v = multibootstrap(labels, pb, sb, pi, si, score=score, n_bootstrap=40, paired=paired, rng=7).samples
            ref = multibootstrap_loop(labels, pb, sb, pi, si, score=score, n_bootstrap=40, paired=paired, rng=7)
            assert np.allclose(v, ref, rtol=0, atol=1e-12), (score, paired, np.abs(v - ref).max())
    print("equal results on a small case (4 seeds x 3 runs x 500 instances, B=40; accuracy/f1/mcc, paired"
          " and unpaired): max |vectorised - loop| <= 1e-12")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop-iters", type=int, default=20, help="iterations of the loop reference per timing")
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats of each version (best and median kept)")
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    args = ap.parse_args(argv)

    check_equal_small()
    labels, pb, sb, pi, si = make_data()
    B = args.n_bootstrap
    kw = dict(score="accuracy", n_bootstrap=B, paired=True, rng=0)

    # The same protocol for both versions (the machine may be shared): `repeats` timings each, best and
    # median reported. The loop reference runs its first `loop_iters` iterations (the RNG stream of a full
    # run), scaled per iteration to B.
    res = multibootstrap(labels, pb, sb, pi, si, **kw)  # warm-up
    t_vec = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = multibootstrap(labels, pb, sb, pi, si, **kw)
        t_vec.append(time.perf_counter() - t0)
    n_loop = min(args.loop_iters, B)
    t_loop = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref = multibootstrap_loop(labels, pb, sb, pi, si, n_iter=n_loop, **kw)
        t_loop.append((time.perf_counter() - t0) / n_loop * B)
    assert np.allclose(res.samples[:n_loop], ref, rtol=0, atol=1e-12), "loop and vectorised disagree on the benchmark"

    tracemalloc.start()
    multibootstrap(labels, pb, sb, pi, si, **kw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    input_mb = (labels.nbytes + pb.nbytes + pi.nbytes) / 2**20

    best = min(t_loop) / min(t_vec)
    med = float(np.median(t_loop) / np.median(t_vec))
    fmt = lambda ts: ", ".join(f"{t:.3f}" for t in ts)  # noqa: E731
    print(f"setting: B={B}, paired, accuracy, 10 pretraining seeds x 5 fine-tuning seeds x {labels.shape[0]:,} "
          f"instances per arm ({pb.shape[0] + pi.shape[0]} runs); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"vectorised: best {min(t_vec):.3f} s, median {np.median(t_vec):.3f} s over {args.repeats} runs ({fmt(t_vec)})")
    print(f"loop reference: run for the first {n_loop} of {B} iterations (same RNG stream, results equal) and "
          f"scaled per iteration to {B}: best {min(t_loop):.1f} s, median {np.median(t_loop):.1f} s ({fmt(t_loop)})")
    print(f"speed ratio: {best:.0f}x best-to-best, {med:.0f}x median-to-median (required >= 50x)")
    print(f"memory: tracemalloc peak of the vectorised call {peak / 2**20:.1f} MiB (inputs {input_mb:.1f} MiB, not counted)")
    print(f"result: delta = {res.delta.point:+.4f}, 95% CI [{res.delta.ci_low:+.4f}, {res.delta.ci_high:+.4f}], "
          f"p = {res.p_value:.3g}")
    if best < 50:
        print("FAIL: speed ratio below 50x")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
