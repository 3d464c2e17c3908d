"""How large a sweep the driver holds: the grid, Tune scheduling, MLflow logging, driver memory, the skip check.

    python benchmarks/bench_scale.py              # the defaults below: local Ray (2 CPUs), a temp SQLite store
    python benchmarks/bench_scale.py --memory-trials 5000 --grid 0 --logging 0 --variants ""   # memory at 5,000
    python benchmarks/bench_scale.py --tracking-uri http://127.0.0.1:5000 --server-log .cluster/logs/mlflow.log \\
        --grid 0 --variants "" --logging 200  # against a tracking server: HTTP requests per trial

Every sweep here is a real `seedlab.run.sweep.run_sweep` whose trials run `seedlab.run.trial.run_trial` as a
sweep does (worker reset, skip check, predictions parquet, one run through `seedlab.store.contract.log_run`),
with training and prediction replaced by `noop_execute`: an outcome shaped like an SST-2 trial's (872
predictions, 25 params, a loss curve of 7 points), made in microseconds.

0. variants (the baseline, `--variants`): Tune's own grid, `tune.grid_search` over the cell dicts (what
   run_sweep passed Tune before) and over cell indices, expanded as Tune does before its first trial.
1. grid (`--grid`, default 10,000 cells): seconds from calling run_sweep to the first trial running (the
   skip check, every cell's trial key, the parent run, the Tuner, Tune's first trial in a fresh worker), and
   to the stages before it. Ray is started first (not counted). Three sweeps in one store, each stopped at
   its first trial with SIGINT, as Ctrl-C would (run_sweep marks it KILLED): one cell `cold` (the process's
   first sweep: it also imports MLflow's store and Tune and creates a new store's tables, once per process or
   store), one cell again (the baseline), then the grid. Grid minus baseline is what the grid's size costs.
2. logging (`--logging`, default 2,000 trials): trials/s end to end, the driver's peak RSS, per-trial
   `time_log_s` and `time_trial_s`; with `--server-log`, HTTP requests per trial from the server's log.
3. memory (`--memory-trials`, off by default): the driver's RSS growth per trial over a sweep that size.
4. store (`--store-runs`, off by default): the driver's skip check `finished_trial_runs` and the per-trial
   query at that many runs in one experiment.

The last two lines are the figures (the one before them, the grid's baselines): `grid of 10000 cells: first trial after X.X s` and
`logging trials through SQLite: X.X trials/s`. Results also print as JSON (and go to --json PATH).
psutil measures memory (`pip install seedlab[bench]`, or `pip install psutil`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import numpy as np  # noqa: E402

try:
    import psutil  # noqa: E402
except ImportError:  # pragma: no cover - a one-line reason instead of a traceback
    sys.exit("bench_scale needs psutil: pip install 'seedlab[bench]' (or pip install psutil)")

N_EVAL = 872  # SST-2 validation


def noop_execute(cell: dict, tracking_uri: str | None = None):
    """`execute_trial`'s outcome for `cell` without training: run_trial's path around it stays real."""
    from seedlab.run.trial import TrialOutcome, hp_config_id, resolve_cell

    c = resolve_cell(cell)
    rng = np.random.default_rng(c["finetune_seed"])
    probs = rng.random((N_EVAL, 2), dtype=np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 2, N_EVAL)
    predictions = probs.argmax(axis=1)
    params = {**{k: c[k] for k in ("task", "model", "method", "pretrain_seed", "finetune_seed", "init_seed",
                                   "order_seed", "dropout_seed")}, **c["hparams"], **c["data"],
              "init_source": "random", "hp_config": hp_config_id(c["hparams"]), "device": "cpu", "num_train": 1000,
              "num_eval": N_EVAL, "train_steps": 63}
    ids = np.array([f"dev-{i:06d}" for i in range(N_EVAL)])
    return TrialOutcome(params, {"eval_accuracy": float(np.mean(predictions == labels))},
                        [(10 * i, 0.7 - 0.01 * i) for i in range(1, 8)], {"setup": 0.0, "train": 0.0, "eval": 0.0},
                        ids, labels, predictions, probs)


def make_spec(n_cells: int, name: str = "scale"):
    from seedlab.run.sweep import SweepSpec

    per_seed = 100
    return SweepSpec(name=name, tasks=("sst2",), models=("tiny",), pretrain_seeds=tuple(range(-(-n_cells // per_seed))),
                     finetune_seeds=tuple(range(min(per_seed, n_cells))), hparams={"epochs": 1},
                     data={"max_train": 1000, "max_eval": N_EVAL})


def rss_mib(pid: int | None = None) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


class PeakRSS:
    """Samples this process's RSS every 0.2 s; .peak in MiB."""

    def __init__(self):
        self.start = self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


class FirstTrial(io.StringIO):
    """The sweep's progress stream: notes when each stage's line arrives (the skip check's cell count, the sweep
    run, the first trial running), then stops the sweep with SIGINT at its first trial."""

    MARKS = {"cells_s": " cells, ", "parent_run_s": "] sweep run ", "first_trial_s": "| running 1 |"}

    def __init__(self):
        super().__init__()
        self.start = time.perf_counter()
        self.at: dict[str, float] = {}

    def write(self, text: str) -> int:
        for mark, needle in self.MARKS.items():
            if mark not in self.at and needle in text:
                self.at[mark] = round(time.perf_counter() - self.start, 2)
                if mark == "first_trial_s":  # Ctrl-C: Tune stops the trials, run_sweep marks the run KILLED
                    os.kill(os.getpid(), signal.SIGINT)
        return super().write(text)


def phase_variants(sizes: list[int]) -> list[dict]:
    """Tune's grid (BasicVariantGenerator, which expands it before the first trial) over the cell dicts and
    over cell indices: the baseline of phase 1."""
    from ray import tune
    from ray.tune.search.variant_generator import generate_variants

    out = []
    for n in sizes:
        cells = make_spec(n).cells()[:n]
        row = {"cells": n}
        for label, space in (("cell_dicts_s", {"cell": tune.grid_search(cells), "context": {"x": 1}}),
                             ("cell_indices_s", {"cell_index": tune.grid_search(list(range(n))), "context": {"x": 1}})):
            t = time.perf_counter()
            count = sum(1 for _ in generate_variants(space))
            row[label] = round(time.perf_counter() - t, 2)
            assert count == n
        out.append(row)
        print(json.dumps({"variants": row}), flush=True)
    return out


def first_trial(n: int, uri: str, label: str) -> dict:
    """Seconds from calling run_sweep on an `n`-cell grid (a new experiment in `uri`) to its first trial
    running, and to the stages before it; the sweep is then stopped as Ctrl-C would stop it."""
    from seedlab.run.sweep import run_sweep

    spec = make_spec(n, "grid")
    base = rss_mib()
    progress = FirstTrial()
    result = run_sweep(spec, f"bench-grid-{label}-{n}-{int(time.time())}", uri, out=progress, execute=noop_execute)
    stopped = round(time.perf_counter() - progress.start, 2)
    assert "first_trial_s" in progress.at and result.interrupted, progress.getvalue()[-2000:]
    return {"cells": n, **progress.at, "stopped_after_s": stopped, "trials_finished_before_stop": result.finished,
            "driver_rss_growth_mib": round(rss_mib() - base, 1)}


def phase_grid(n: int, uri: str) -> dict:
    """The grid's figure and its same-run baseline. A process's first sweep also pays what a process pays once
    (importing MLflow's store and Tune, creating a new SQLite store's tables): that 1-cell sweep is timed first
    and reported as `cold`; then a 1-cell sweep (the baseline) and the `n`-cell one, each in a new experiment
    of the same store. The difference between the last two is what the grid's size costs."""
    return {"cold": first_trial(1, uri, "cold"), "one_cell": first_trial(1, uri, "one"),
            "grid": first_trial(n, uri, "grid")}


def phase_sweep(n: int, uri: str, server_log: str | None = None) -> dict:
    from seedlab.run.sweep import run_sweep

    spec = make_spec(n, "logging")
    lines = _count_lines(server_log)
    with PeakRSS() as peak:
        result = run_sweep(spec, f"bench-logging-{n}-{int(time.time())}", uri, out=io.StringIO(), execute=noop_execute)
    assert result.finished == n and result.failed == 0, result
    rows = result.trial_results
    out = {"trials": n, "wall_s": round(result.wall_seconds, 1), "trials_per_s": round(n / result.wall_seconds, 2),
           "workers": len({r.get("pid") for r in rows}),
           "time_log_s": _quantiles([r["time_log_s"] for r in rows]),
           "time_trial_s": _quantiles([r["time_trial_s"] for r in rows]),
           "driver_rss_mib": {"before": round(peak.start, 1), "peak": round(peak.peak, 1),
                              "per_trial_kib": round((peak.peak - peak.start) * 1024 / n, 1)}}
    if server_log:
        out["http_requests_per_trial"] = round((_count_lines(server_log) - lines) / n, 2)
    return out


def phase_store(uri: str, target: int, threads: int) -> dict:
    """Fill an experiment with `target` FINISHED trial runs (log_run from `threads` threads), then time the
    driver's skip check and the per-trial query."""
    from seedlab.store.contract import (TAG_TRIAL_KEY, client, finished_trial_runs, first_run,
                                        get_or_create_experiment, log_run)
    from seedlab.store.predictions import write_predictions
    from seedlab.run.trial import run_name, trial_key

    store = client(uri)
    experiment_id = get_or_create_experiment(store, f"bench-store-{int(time.time())}", uri)
    cells = make_spec(target).cells()[:target]
    tmp = Path(tempfile.mkdtemp(prefix="seedlab-bench-"))
    outcome = noop_execute(cells[0])
    parquet = write_predictions(tmp / "validation.parquet", outcome.instance_ids, outcome.labels,
                                outcome.predictions, outcome.probs)
    local = threading.local()

    def log_one(cell):
        if not hasattr(local, "client"):
            local.client = client(uri)
        t = time.perf_counter()
        log_run(local.client, experiment_id, run_name(cell), outcome.params, [("eval_accuracy", 0.5, 0)],
                {"seedlab.kind": "trial", TAG_TRIAL_KEY: trial_key(cell)}, {"predictions": str(parquet)})
        return time.perf_counter() - t

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        per_run = list(pool.map(log_one, cells))
    fill = time.perf_counter() - t
    t = time.perf_counter()
    finished = finished_trial_runs(store, experiment_id)
    t_all = time.perf_counter() - t
    t = time.perf_counter()
    first_run(store, [experiment_id], tags={TAG_TRIAL_KEY: trial_key(cells[target // 2])})
    t_one = time.perf_counter() - t
    return {"runs": len(finished), "log_run_per_s": round(target / fill, 2), "log_run_s": _quantiles(per_run),
            "finished_trial_runs_s": round(t_all, 3), "per_trial_query_s": round(t_one, 4)}


def _quantiles(values) -> dict:
    return {"median": round(float(np.median(values)), 4), "p95": round(float(np.quantile(values, 0.95)), 4)}


def _count_lines(path: str | None) -> int:
    if not path:
        return 0
    with open(path, "rb") as fh:
        return sum(1 for line in fh if b" HTTP/1.1" in line)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="1000,2000",
                    help="grid sizes for Tune's own grid, the baseline (default 1000,2000; '' skips it)")
    ap.add_argument("--grid", type=int, default=10000, help="cells of the first-trial sweep (default 10000; 0 skips)")
    ap.add_argument("--logging", type=int, default=2000, help="trials of the logging sweep (default 2000; 0 skips)")
    ap.add_argument("--memory-trials", type=int, default=0, help="trials of the driver-memory sweep (default off)")
    ap.add_argument("--store-runs", type=int, default=0, help="runs in the store for the skip check (default off)")
    ap.add_argument("--threads", type=int, default=2, help="concurrent log_run callers filling the store")
    ap.add_argument("--cpus", type=int, default=2, help="logical CPUs of the local Ray node (default 2)")
    ap.add_argument("--ray-address", help="an existing cluster's GCS address instead of a local Ray")
    ap.add_argument("--tracking-uri", help="default: a SQLite store in a temporary directory")
    ap.add_argument("--server-log", help="the MLflow server's log, to count HTTP requests per trial")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    import ray

    from seedlab.store.contract import resolve_tracking_uri

    work = Path(tempfile.mkdtemp(prefix="seedlab-bench-scale-"))
    os.environ.setdefault("SEEDLAB_RAY_STORAGE", str(work / "ray_results"))
    uri = resolve_tracking_uri(args.tracking_uri or f"sqlite:///{work}/mlflow.db")
    store_name = "SQLite" if uri.startswith("sqlite") else "the tracking server"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = {"tracking_uri": uri.split("@")[-1], "ray": args.ray_address or f"local, {args.cpus} CPUs",
               "cpu_count": os.cpu_count(), "load_average_at_start": round(load, 1), "argv": sys.argv[1:]}
    print(f"[bench_scale] store {results['tracking_uri']}; work dir {work}; load average {load:.1f}", flush=True)
    if args.variants:
        results["variants"] = phase_variants([int(x) for x in args.variants.split(",") if x.strip()])
    if args.ray_address:
        ray.init(address=args.ray_address, logging_level="ERROR")
    else:
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
    try:
        if args.grid:
            results["grid"] = phase_grid(args.grid, uri)
            print(json.dumps({"grid": results["grid"]}), flush=True)
        if args.logging:
            results["logging"] = phase_sweep(args.logging, uri, args.server_log)
            print(json.dumps({"logging": results["logging"]}), flush=True)
        if args.memory_trials:
            results["memory"] = phase_sweep(args.memory_trials, uri)
            print(json.dumps({"memory": results["memory"]}), flush=True)
    finally:
        ray.shutdown()
    if args.store_runs:
        results["store"] = phase_store(uri, args.store_runs, args.threads)
        print(json.dumps({"store": results["store"]}), flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if "variants" in results:
        print("Tune's grid, expanded before its first trial (the baseline): " + ", ".join(
            f"{r['cells']} cells: over cell dicts {r['cell_dicts_s']:.1f} s, over indices {r['cell_indices_s']:.1f} s"
            for r in results["variants"]))
    if "memory" in results:
        m = results["memory"]
        print(f"driver memory over {m['trials']} trials: {m['driver_rss_mib']['per_trial_kib']:.1f} KiB per trial "
              f"(peak RSS {m['driver_rss_mib']['peak']:.0f} MiB)")
    if "grid" in results:
        g = results["grid"]
        print(f"first trial of a 1-cell sweep: {g['one_cell']['first_trial_s']:.1f} s (the process's first sweep, "
              f"importing MLflow and Tune and creating the store: {g['cold']['first_trial_s']:.1f} s)")
        print(f"grid of {args.grid} cells: first trial after {g['grid']['first_trial_s']:.1f} s")
    if "logging" in results:
        print(f"logging trials through {store_name}: {results['logging']['trials_per_s']:.1f} trials/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
