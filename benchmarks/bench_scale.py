"""How large a sweep the driver holds: grid size, Tune scheduling, MLflow logging and the skip check.

    python benchmarks/bench_scale.py                      # the defaults below, local Ray + a temp SQLite store
    python benchmarks/bench_scale.py --tracking-uri http://127.0.0.1:5000 --server-log .cluster/logs/mlflow.log
                                                          # against the local cluster's MLflow server
                                                          # (credentials from MLFLOW_TRACKING_USERNAME/PASSWORD)

0. variants: Tune's variant generation for grids of `--variants` sizes, over the cell dicts (what
   run_sweep passes to `tune.grid_search` today) and over cell indices (the proposed patch).

Trials do no training: each does exactly what `seedlab.run.trial.run_trial` does around training, with the
same store calls. It runs the skip check (one `search_runs` by trial key), writes an SST-2-sized
predictions parquet (872 rows) and logs one run through `seedlab.store.contract.log_run`: ~25 params, 11
metrics, 5 tags and the artifact. Phases:

1. grid: a `--grid`-cell SweepSpec (sst2 x tiny x pretraining seeds x 100 fine-tuning seeds): `cells()`,
   `trial_key` of each cell (what `run_sweep` computes for its skip check) and the `tune.Tuner` as
   `run_sweep` builds it (grid_search over the cells, the resource callable, FailureConfig, the progress
   callback). Time and driver RSS after each step.
2. noop: `--noop` trials (default: all `--grid` cells) through Tune with a trainable that only reports.
   This is Tune's scheduling rate and the driver's peak RSS while it holds every trial. A size suffixed
   `:reuse` runs with `TuneConfig(reuse_actors=True)`; run_sweep uses Tune's default (False: one new worker
   process per trial). Skipped with --noop 0.
3. logging: `--logging` trials (comma-separated sizes, `:reuse` as above) through Tune with the logging
   trainable.
   Reported: end-to-end trials/s, store calls per run (counted on the client object handed to `log_run`),
   HTTP requests per run (with --server-log: lines the server logged during the phase), `log_run` time per
   run, and the driver's peak RSS.
4. store: the experiment filled to `--store-runs` FINISHED trial runs with `log_run` from `--threads`
   threads (MLflow's logging rate outside Tune). At each size in `--checkpoints`: the driver's skip check
   `seedlab.store.contract.finished_trial_runs` and the per-trial skip-check query.

Ray runs locally (`ray.init(address="local", num_cpus=--cpus)`) unless --ray-address is given. Results
print as one JSON object (also to --json PATH).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import numpy as np  # noqa: E402
import psutil  # noqa: E402  (a Ray dependency)

N_EVAL = 872  # SST-2 validation


class Counting:
    """A store client that counts the calls made through it (handed to `log_run` in place of the client)."""

    def __init__(self, inner):
        self._inner, self.calls = inner, Counter()

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return call


class PeakRSS:
    """Samples this process's RSS every 0.2 s; .peak in MiB."""

    def __init__(self):
        self.peak, self._stop = rss_mib(), threading.Event()
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


def rss_mib(pid: int | None = None) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def ray_process_rss() -> dict:
    """RSS (MiB) of the GCS and raylet this driver started (local mode): in a cluster they live on the head."""
    out = {}
    for child in psutil.Process().children(recursive=True):
        try:
            name = " ".join(child.cmdline()[:1])
        except psutil.Error:
            continue
        for key in ("gcs_server", "raylet"):
            if name.endswith(key):
                out[key] = round(child.memory_info().rss / 2**20, 1)
    return out


def make_spec(n_cells: int):
    from seedlab.run.sweep import SweepSpec

    per_seed = 100
    return SweepSpec(name="scale", tasks=("sst2",), models=("tiny",), pretrain_seeds=tuple(range(-(-n_cells // per_seed))),
                     finetune_seeds=tuple(range(per_seed)), hparams={"epochs": 1},
                     data={"max_train": 1000, "max_eval": N_EVAL})


def predictions_file(directory: Path) -> Path:
    from seedlab.store.predictions import write_predictions

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, N_EVAL)
    probs = rng.random((N_EVAL, 2)).astype(np.float32)
    return write_predictions(directory / "validation.parquet", [f"sst2-{i}" for i in range(N_EVAL)], labels,
                             probs.argmax(1), probs)


def trial_record(cell: dict, ctx: dict):
    """(name, params, metrics, tags) shaped like run_trial's."""
    from seedlab import __version__
    from seedlab.store.contract import TAG_GIT, TAG_KIND, TAG_SWEEP, TAG_TRIAL_KEY, TAG_VERSION
    from seedlab.run.trial import resolve_cell, run_name, trial_key

    c = resolve_cell(cell)
    params = {k: c[k] for k in ("task", "model", "pretrain_seed", "finetune_seed", "init_seed", "order_seed",
                                "dropout_seed")}
    params.update(c["hparams"], **c["data"], init_source="random", device="cpu", num_train=1000, num_eval=N_EVAL,
                  train_steps=32)
    metrics = [("eval_accuracy", 0.5, 0)] + [("train_loss", 0.7 - 0.01 * i, 10 * i) for i in range(7)]
    metrics += [(f"time_{k}_s", 1.0, 0) for k in ("setup", "train", "eval")]
    tags = {TAG_KIND: "trial", TAG_SWEEP: ctx["sweep"], TAG_TRIAL_KEY: trial_key(cell), TAG_GIT: "bench",
            TAG_VERSION: __version__}
    return run_name(cell), params, metrics, tags


def logging_trainable(config, cells=None):
    """run_trial without the training: skip check, local parquet, one run through log_run."""
    from ray import tune

    from seedlab.store.contract import TAG_TRIAL_KEY, client, log_run
    from seedlab.run.trial import trial_key

    cell = config["cell"] if "cell" in config else cells[config["cell_index"]]
    ctx = config["context"]
    store = Counting(client(ctx["tracking_uri"]))
    t0 = time.perf_counter()
    store.search_runs([ctx["experiment_id"]], max_results=1,
                      filter_string=f"tags.`{TAG_TRIAL_KEY}` = '{trial_key(cell)}' and attributes.status = 'FINISHED'")
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seedlab-bench-") as tmp:
        parquet = predictions_file(Path(tmp))
        name, params, metrics, tags = trial_record(cell, ctx)
        log_run(store, ctx["experiment_id"], name, params, metrics, tags, {"predictions": str(parquet)},
                parent_run_id=ctx.get("parent_run_id"))
    t2 = time.perf_counter()
    tune.report({"skip_check_s": t1 - t0, "log_s": t2 - t1, **{f"calls_{k}": v for k, v in store.calls.items()}})


def noop_trainable(config, cells=None):
    from ray import tune

    cell = config["cell"] if "cell" in config else cells[config["cell_index"]]
    tune.report({"model": cell["model"]})


def build_tuner(trainable, spec, cells, context, storage: str, name: str, reuse_actors: bool = False,
                grid: str = "cells"):
    """The Tuner as seedlab.run.sweep.run_sweep builds it (its progress callback included). Two deviations,
    measured separately: `reuse_actors=True` (run_sweep leaves Tune's default, False), and
    `grid="indices"`, the proposed grid over cell indices with the cells handed over once through
    `tune.with_parameters` (run_sweep's grid is over the cell dicts: `grid="cells"`)."""
    from ray import tune
    from ray.tune import PlacementGroupFactory

    from seedlab.run.progress import SweepProgress, tune_callback

    progress = SweepProgress(spec.name, len(cells), out=io.StringIO())
    if grid == "cells":
        trainable = tune.with_resources(trainable, spec.resources(use_gpu=False))
        space = {"cell": tune.grid_search(cells), "context": context}
    else:  # what the patched SweepSpec.resources(use_gpu, cells) returns for a CPU cluster
        trainable = tune.with_resources(tune.with_parameters(trainable, cells=cells),
                                        lambda config: PlacementGroupFactory([{"CPU": spec.cpus_per_trial, "GPU": 0}]))
        space = {"cell_index": tune.grid_search(list(range(len(cells)))), "context": context}
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=None, reuse_actors=reuse_actors),
        run_config=tune.RunConfig(name=name, storage_path=storage,
                                  failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                  callbacks=[tune_callback(progress)], verbose=0),
    )


def phase_grid(n: int, storage: str, grid: str) -> dict:
    from seedlab.run.trial import trial_key

    base = rss_mib()
    t = time.perf_counter()
    spec = make_spec(n)
    cells = spec.cells()[:n]
    t_cells = time.perf_counter() - t
    t = time.perf_counter()
    keys = {trial_key(c) for c in cells}
    t_keys = time.perf_counter() - t
    assert len(keys) == n
    after_cells = rss_mib()
    t = time.perf_counter()
    tuner = build_tuner(noop_trainable, spec, cells, {"tracking_uri": "unused"}, storage, f"grid-{n}", grid=grid)
    t_tuner = time.perf_counter() - t
    after_tuner = rss_mib()
    del tuner
    return {"cells": n, "grid": grid, "cells_s": round(t_cells, 3), "trial_keys_s": round(t_keys, 3),
            "tuner_construction_s": round(t_tuner, 3), "rss_before_mib": round(base, 1),
            "rss_after_cells_mib": round(after_cells, 1), "rss_after_tuner_mib": round(after_tuner, 1)}


def phase_tune(trainable, n: int, storage: str, context: dict, name: str, server_log: str | None = None,
               reuse_actors: bool = False, grid: str = "cells") -> dict:
    spec = make_spec(n)
    cells = spec.cells()[:n]
    log_lines = _count_lines(server_log)
    with PeakRSS() as peak:
        tuner = build_tuner(trainable, spec, cells, context, storage, name, reuse_actors, grid)
        t = time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - t
        ray_rss = ray_process_rss()
    errors = sum(1 for r in results if r.error is not None)
    metrics = [r.metrics or {} for r in results]
    out = {"trials": n, "grid": grid, "reuse_actors": reuse_actors, "errors": errors, "wall_s": round(wall, 1), "trials_per_s": round(n / wall, 2),
           "driver_peak_rss_mib": round(peak.peak, 1), "ray_processes_rss_mib": ray_rss}
    state = sorted(Path(storage, name).glob("experiment_state-*.json"))
    if state:
        out["experiment_state_bytes"] = state[-1].stat().st_size
    if trainable is logging_trainable:
        calls = Counter()
        for m in metrics:
            calls.update({k.removeprefix("calls_"): v for k, v in m.items() if k.startswith("calls_")})
        out["store_calls_per_run"] = {k: round(v / n, 2) for k, v in sorted(calls.items())}
        out["store_calls_per_run_total"] = round(sum(calls.values()) / n, 2)
        logs = [m["log_s"] for m in metrics if "log_s" in m]
        checks = [m["skip_check_s"] for m in metrics if "skip_check_s" in m]
        out["log_run_s"] = {"median": round(float(np.median(logs)), 4), "p95": round(float(np.quantile(logs, 0.95)), 4)}
        out["skip_check_query_s_median"] = round(float(np.median(checks)), 4)
        out["runs_logged_per_s"] = round(len(logs) / wall, 2)
        if server_log:
            out["http_requests_per_trial"] = round((_count_lines(server_log) - log_lines) / n, 2)
    return out


def phase_variants(sizes: list[int]) -> list[dict]:
    """Tune's variant generation alone (what BasicVariantGenerator does, eagerly, before the first trial
    starts): grid over the cell dicts (run_sweep today) vs over cell indices (the proposed patch)."""
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


def _count_lines(path: str | None) -> int:
    if not path:
        return 0
    with open(path, "rb") as fh:
        return sum(1 for line in fh if b" HTTP/1.1" in line)


def phase_store(uri: str, experiment_id: str, target: int, checkpoints: list[int], threads: int, start: int) -> dict:
    """Fill the experiment to `target` FINISHED trial runs with log_run, timing the skip check at checkpoints."""
    from seedlab.store.contract import TAG_TRIAL_KEY, client, finished_trial_runs
    from seedlab.run.trial import trial_key

    spec = make_spec(target)
    cells = spec.cells()[:target]
    ctx = {"sweep": "scale"}
    stores = threading.local()

    def log_one(cell):
        from seedlab.store.contract import log_run

        if not hasattr(stores, "client"):
            stores.client = client(uri)
        name, params, metrics, tags = trial_record(cell, ctx)
        t = time.perf_counter()
        log_run(stores.client, experiment_id, name, params, metrics, tags, {"predictions": str(parquet)})
        return time.perf_counter() - t

    tmp = Path(tempfile.mkdtemp(prefix="seedlab-bench-"))
    parquet = predictions_file(tmp)
    store = client(uri)
    done = len(finished_trial_runs(store, experiment_id))
    out = {"threads": threads, "checkpoints": []}
    fill_time, filled, per_run = 0.0, 0, []
    for size in sorted(set(checkpoints + [target])):
        if size > done:
            batch = cells[done:size]
            t = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                per_run += list(pool.map(log_one, batch))
            fill_time += time.perf_counter() - t
            filled += len(batch)
            done = size
        t = time.perf_counter()
        finished = finished_trial_runs(store, experiment_id)
        t_all = time.perf_counter() - t
        key = trial_key(cells[size // 2])
        t = time.perf_counter()
        store.search_runs([experiment_id], max_results=1,
                          filter_string=f"tags.`{TAG_TRIAL_KEY}` = '{key}' and attributes.status = 'FINISHED'")
        t_one = time.perf_counter() - t
        out["checkpoints"].append({"runs": len(finished), "finished_trial_runs_s": round(t_all, 3),
                                   "skip_check_query_s": round(t_one, 4), "driver_rss_mib": round(rss_mib(), 1)})
    if filled:
        out["log_run_direct"] = {"runs": filled, "runs_per_s": round(filled / fill_time, 2),
                                 "log_run_s_median": round(float(np.median(per_run)), 4)}
    return out


def _sizes(text: str) -> list[tuple[int, bool]]:
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        n, _, flag = item.partition(":")
        if int(n) > 0:
            out.append((int(n), flag == "reuse"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=int, default=5000, help="grid cells for phases 1 and 2 (default 5000)")
    ap.add_argument("--grid-mode", choices=["cells", "indices"], default="indices",
                    help="Tune grid over the cell dicts (run_sweep today) or over cell indices (the proposed "
                         "patch); phases 1-3 (default indices: 'cells' is quadratic, see --variants)")
    ap.add_argument("--variants", default="500,1000,2000",
                    help="sizes for the variant-generation comparison, phase 0 (default 500,1000,2000)")
    ap.add_argument("--noop", default=None,
                    help="comma-separated trial counts for phase 2, each optionally suffixed ':reuse' "
                         "(reuse_actors=True); default: --grid:reuse; 0 skips it")
    ap.add_argument("--logging", default="100,500:reuse",
                    help="comma-separated trial counts for phase 3, ':reuse' as above (default 100,500:reuse)")
    ap.add_argument("--store-runs", type=int, default=5000, help="runs in the store for phase 4 (0 skips it)")
    ap.add_argument("--checkpoints", default="1000,2500", help="store sizes (besides --store-runs) to time at")
    ap.add_argument("--threads", type=int, default=2, help="concurrent log_run callers in phase 4 (default 2)")
    ap.add_argument("--cpus", type=int, default=2, help="logical CPUs of the local Ray node (default 2)")
    ap.add_argument("--ray-address", help="an existing cluster's GCS address instead of a local Ray")
    ap.add_argument("--tracking-uri", help="default: a SQLite store in a temporary directory")
    ap.add_argument("--server-log", help="the MLflow server's log, to count HTTP requests per trial")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    import ray

    from seedlab.store.contract import client, get_or_create_experiment, resolve_tracking_uri, start_sweep_run

    work = Path(tempfile.mkdtemp(prefix="seedlab-bench-scale-"))
    uri = resolve_tracking_uri(args.tracking_uri or f"sqlite:///{work}/mlflow.db")
    storage = str(work / "ray_results")
    results = {"tracking_uri": uri.split("@")[-1], "ray": args.ray_address or f"local, {args.cpus} CPUs",
               "cpu_count": os.cpu_count(), "argv": sys.argv[1:]}
    print(f"[bench_scale] store {results['tracking_uri']}; work dir {work}", flush=True)

    if args.variants:
        results["variants"] = phase_variants([int(x) for x in args.variants.split(",") if x.strip()])
    results["grid"] = phase_grid(args.grid, storage, args.grid_mode)
    print(json.dumps({"grid": results["grid"]}), flush=True)

    if args.ray_address:
        ray.init(address=args.ray_address, logging_level="ERROR")
    else:
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
    store = client(uri)
    try:
        results["noop"] = []
        for i, (n, reuse) in enumerate(_sizes(f"{args.grid}:reuse" if args.noop is None else args.noop)):
            results["noop"].append(phase_tune(noop_trainable, n, storage, {"tracking_uri": "unused"},
                                              f"noop-{n}-{i}", reuse_actors=reuse, grid=args.grid_mode))
            print(json.dumps({"noop": results["noop"][-1]}), flush=True)
        results["logging"] = []
        for i, (n, reuse) in enumerate(_sizes(args.logging)):
            experiment = f"bench-scale-tune-{n}-{int(time.time())}"
            experiment_id = get_or_create_experiment(store, experiment, uri)
            parent = start_sweep_run(store, experiment_id, "scale", {"cells": n})
            context = {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent, "sweep": "scale"}
            results["logging"].append(phase_tune(logging_trainable, n, storage, context, f"logging-{n}-{i}",
                                                 args.server_log, reuse_actors=reuse, grid=args.grid_mode))
            print(json.dumps({"logging": results["logging"][-1]}), flush=True)
    finally:
        ray.shutdown()
    if args.store_runs:
        experiment_id = get_or_create_experiment(store, f"bench-scale-store-{int(time.time())}", uri)
        checkpoints = [int(x) for x in args.checkpoints.split(",") if x.strip()]
        results["store"] = phase_store(uri, experiment_id, args.store_runs, checkpoints, args.threads, 0)
        print(json.dumps({"store": results["store"]}), flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
