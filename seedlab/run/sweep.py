"""Sweeps: a declared grid of (task x model x mitigation method x pretraining seed x fine-tuning seed) run through
Ray Tune.

A sweep file (sweeps/*.py) declares `SweepSpec` profiles and calls `sweep_main`; it holds no training
code. `run_sweep` validates the spec, opens the MLflow experiment and a parent run, skips cells whose trial
key already has a FINISHED run, and runs the rest with `ray.tune.Tuner`, per-trial resources from a callable
(CPUs and a GPU fraction per model size) and `FailureConfig` retries.
The same code runs locally (Ray started in-process) and under `ray job submit` (RAY_ADDRESS set).

At the speed of the hardware, for grids of any size:
- the cells go to the workers once (`tune.with_parameters`), and Tune gets cell indices from a searcher that
  hands them out as trials start (`CellOrder`), so nothing is expanded or copied per cell up front;
- workers are reused between trials (`TuneConfig(reuse_actors=True)`); `seedlab.run.trial.reset_worker_state`
  gives each trial the state of a fresh process, and a worker that dies is replaced by a fresh one; Tune may
  keep as many trials pending as the cluster has slots (`seedlab.run.ray_runtime.pending_trials`), so every
  slot's worker starts at once and stays busy;
- a rerun marks the parent run of a killed driver KILLED (with a note naming the rerun), and Ctrl-C stops the
  trials, marks this launch's parent run KILLED and says how to resume (run the same command again).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from seedlab.errors import SeedlabError, choice_error
from seedlab.train.finetune import Hyperparameters, TrainingSettings
from seedlab.train.lora import LoraSettings
from seedlab.train.mitigation import METHODS, validate_method
from seedlab.data.catalog import NAMED_CHECKPOINTS, RANDOM_DECODERS, is_pretrainable
from seedlab.train.models import BERT_SIZES, check_loadable, validate_model
from seedlab.run.progress import SweepProgress, tune_callback
from seedlab.data.tasks import TASKS, get_task

# GPU fraction per size, so several small trials share one GPU (the paper profile on a GPU cluster).
DEFAULT_GPU_FRACTION = {"tiny": 0.125, "mini": 0.125, "small": 0.25, "medium": 0.25, "base": 0.5, "large": 1.0}


@dataclass(frozen=True)
class SweepSpec:
    name: str
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    pretrain_seeds: tuple[int, ...]
    finetune_seeds: tuple[int, ...]
    methods: tuple[str, ...] = ("standard",)  # mitigation methods (seedlab.train.mitigation.METHODS)
    hparams: dict = field(default_factory=dict)  # Hyperparameters fields
    # per-model overrides of `hparams`, e.g. {"mini": {"learning_rate": 3e-4}} (Zhong et al. set them per size)
    model_hparams: dict = field(default_factory=dict)
    # per-model overrides of `pretrain_seeds`, e.g. {"minilm": (0,)}: a published checkpoint has one pretraining seed
    model_pretrain_seeds: dict = field(default_factory=dict)
    # per-model overrides of `finetune_seeds`, e.g. {"minilm": (0, 1)} (make demo: 8 runs fill 2 slots evenly)
    model_finetune_seeds: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # max_train, max_eval, data_seed
    # per-model LoRA ("lora" or seedlab.train.lora.LoraSettings fields), e.g. {"meta-llama/Llama-3.2-3B": {"r": 16}};
    # models not named here are fine-tuned in full
    model_peft: dict = field(default_factory=dict)
    # per-model large-model settings (seedlab.train.finetune.TrainingSettings fields: torch_dtype,
    # gradient_checkpointing, grad_accumulation)
    model_training: dict = field(default_factory=dict)
    log_adapter: bool = False  # log each LoRA trial's adapter (safetensors) with its run
    cpus_per_trial: float = 1.0
    gpu_fraction: dict = field(default_factory=lambda: dict(DEFAULT_GPU_FRACTION))  # per model; others: 1.0
    max_failures: int = 2  # retries per trial (FailureConfig)
    pretrained: bool = False  # fine-tune from seedlab-pretrained checkpoints
    log_representations: bool = False  # log each layer's first-token states (Du & Nguyen representation measures)
    tuning: object = None  # a seedlab.run.tuning.TuningSpec: choose hyperparameters per (task, model) first
    # PretrainConfig fields {"*": {...}, model: {...}}: pretrain the missing seed families of every model seedlab can
    # pretrain (BERT sizes, "<named>+mlm") before fine-tuning; other models are fine-tuned from their own weights
    pretrain: dict | None = None
    description: str = ""

    def validate(self) -> None:
        """Every option checked before anything launches; one-line errors naming the valid values."""
        if not self.tasks or not self.models or not self.methods or not self.pretrain_seeds or not self.finetune_seeds:
            raise SeedlabError(f"sweep {self.name!r} has an empty axis "
                               "(tasks, models, methods and both seed lists need values)")
        for task in self.tasks:
            get_task(task)
        for method in self.methods:
            validate_method(method)
        for model in self.models:
            validate_model(model)
        overrides = (*self.model_pretrain_seeds.values(), *self.model_finetune_seeds.values())
        for seed in (*self.pretrain_seeds, *self.finetune_seeds, *(s for v in overrides for s in v)):
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                raise SeedlabError(f"invalid seed {seed!r} (valid: non-negative integers)")
        for option in ("model_pretrain_seeds", "model_finetune_seeds"):
            for model, seeds in getattr(self, option).items():
                if model not in self.models or not seeds:
                    raise SeedlabError(f"{option} names model {model!r} with seeds {seeds!r} (valid: a model "
                                       f"the sweep runs, {', '.join(self.models)}, with at least one seed)")
        for model in self.models:  # one published checkpoint: more pretraining seeds would repeat one computation
            if ((model in NAMED_CHECKPOINTS or model in RANDOM_DECODERS or Path(model).exists())
                    and len(self.pretrain_seeds_for(model)) > 1):
                raise SeedlabError(f"model {model!r} has one published checkpoint, so one pretraining seed (valid: "
                                   f"model_pretrain_seeds={{{model!r}: (0,)}}; seed families: {model}+mlm)")
        for option in ("model_hparams", "model_peft", "model_training"):
            for model in getattr(self, option):
                if model not in self.models:
                    raise SeedlabError(f"{option} names model {model!r}, which the sweep does not run "
                                       f"(valid: {', '.join(self.models)})")
        for model, peft in self.model_peft.items():
            LoraSettings.from_cell(peft)
        for model, training in self.model_training.items():
            TrainingSettings.from_cell(training)
        for hparams in (self.hparams, *self.model_hparams.values()):
            unknown = set(hparams) - set(Hyperparameters.__dataclass_fields__)
            if unknown:
                raise SeedlabError(f"unknown hyperparameter(s) {sorted(unknown)} "
                                   f"(valid: {', '.join(Hyperparameters.__dataclass_fields__)})")
        if self.cpus_per_trial <= 0 or self.max_failures < 0:
            raise SeedlabError("cpus_per_trial must be > 0 and max_failures >= 0")
        if self.tuning is not None:
            if self.model_peft or self.model_training:  # the tuning stage's trials would be full fine-tuning
                raise SeedlabError(f"sweep {self.name!r}: a tuning stage cannot be combined with model_peft or "
                                   "model_training yet (valid: tune without them, then set hparams/model_hparams)")
            self.tuning.validate()
        if self.pretrain is not None:
            from seedlab.train.pretrain import stage_configs

            if not self.pretrained:
                raise SeedlabError(f"sweep {self.name!r} has a pretraining stage but pretrained=False")
            stage_configs(self.pretrained_families(), config_by_size=self.pretrain)

    def check_models(self) -> None:
        """Refuse, before anything launches, a model whose weights cannot be loaded (`check_loadable`)."""
        for model in self.models:
            check_loadable(model, self.pretrain_seeds_for(model))

    def pretrain_seeds_for(self, model: str) -> tuple[int, ...]:
        return tuple(self.model_pretrain_seeds.get(model, self.pretrain_seeds))

    def finetune_seeds_for(self, model: str) -> tuple[int, ...]:
        return tuple(self.model_finetune_seeds.get(model, self.finetune_seeds))

    def pretrained_families(self) -> list[tuple[str, int]]:
        """(model, pretraining seed) of every family the pretraining stage makes (none without a stage)."""
        if self.pretrain is None:
            return []
        return [(m, p) for m in self.models if is_pretrainable(m) for p in self.pretrain_seeds_for(m)]

    def pretrain_key(self, model: str, pretrain_seed: int) -> str | None:
        if self.pretrain is None or not is_pretrainable(model):
            return None
        from seedlab.train.pretrain import pretrain_config

        return pretrain_config(model, pretrain_seed, self.pretrain).key()

    def hparams_for(self, model: str) -> dict:
        """The profile's hyperparameters for one model: `hparams` with its `model_hparams` overrides."""
        return {**self.hparams, **self.model_hparams.get(model, {})}

    def cells(self, choices: dict | None = None) -> list[dict]:
        """The grid. `choices`: {(task, model): TuningChoice} from a tuning stage, whose hyperparameters
        replace the profile's for that (task, model)."""
        choices = choices or {}
        cells = []
        for t in self.tasks:
            for m in self.models:
                choice = choices.get((t, m))
                hparams = dict(choice.hparams) if choice else self.hparams_for(m)
                for k in self.methods:  # one tuning choice per (task, model), shared by its methods
                    for p in self.pretrain_seeds_for(m):
                        for f in self.finetune_seeds_for(m):
                            # models seedlab cannot pretrain are fine-tuned from their own published weights
                            cell = {"task": t, "model": m, "method": k, "pretrain_seed": p, "finetune_seed": f,
                                    "hparams": hparams, "data": dict(self.data),
                                    "pretrained": self.pretrained and is_pretrainable(m),
                                    "log_representations": self.log_representations}
                            if m in self.model_peft:
                                cell["peft"] = self.model_peft[m]
                                cell["log_adapter"] = self.log_adapter
                            if m in self.model_training:
                                cell["training"] = dict(self.model_training[m])
                            if choice:
                                cell["tuning_choice"] = choice.run_id
                            if self.pretrain_key(m, p):
                                cell["pretrain_key"] = self.pretrain_key(m, p)
                            cells.append(cell)
        return cells

    def gpu_per_trial(self, model: str, use_gpu: bool) -> float:
        """The GPU share one trial of `model` takes (0 on a cluster without GPUs)."""
        return self.gpu_fraction.get(model, 1.0) if use_gpu else 0.0

    def resources(self, use_gpu: bool, models: list[str] | None = None):
        """The per-trial resource callable handed to `tune.with_resources`. Its config holds the cell, or a
        `cell_index` into `models` (the model of each cell of the grid)."""
        from ray.tune import PlacementGroupFactory

        def for_trial(config: dict):
            model = models[config["cell_index"]] if "cell_index" in config else config["cell"]["model"]
            return PlacementGroupFactory([{"CPU": self.cpus_per_trial, "GPU": self.gpu_per_trial(model, use_gpu)}])

        return for_trial


def cell_order(labels: list[str]):
    """A Tune searcher that hands out the cell indices 0 .. len(labels) - 1, one per trial, as Tune asks for
    them (Tune's grid expands and deep-copies every variant before its first trial: quadratic in the cells),
    each with its cell's label (`cell_label`) for the trial's directory name."""
    from ray.tune.search import Searcher

    class CellOrder(Searcher):
        def __init__(self):
            super().__init__()
            self.labels, self.next_index = list(labels), 0

        def suggest(self, trial_id: str):
            if self.next_index >= len(self.labels):
                return Searcher.FINISHED
            self.next_index += 1
            return {"cell_index": self.next_index - 1, "cell_label": self.labels[self.next_index - 1]}

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            pass  # nothing to learn: the order is fixed

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True  # the param_space holds only constants (the context)

        def save(self, checkpoint_path: str) -> None:  # Tune's experiment state, as JSON
            Path(checkpoint_path).write_text(json.dumps({"labels": self.labels, "next_index": self.next_index}))

        def restore(self, checkpoint_path: str) -> None:
            state = json.loads(Path(checkpoint_path).read_text())
            self.labels, self.next_index = state["labels"], state["next_index"]

    return CellOrder()


def cell_label(cell: dict) -> str:
    """`<task>_<model>_p<p>_f<f>[_<method>]`, with only characters a directory name can hold."""
    method = cell.get("method", "standard")
    text = f"{cell['task']}_{cell['model']}_p{cell['pretrain_seed']}_f{cell['finetune_seed']}"
    text += "" if method == "standard" else f"_{method}"
    return "".join(ch if ch.isalnum() or ch in "_-." else "-" for ch in text)


def trial_dirname(trial) -> str:
    """A trial directory name that says which cell runs there: `<trial id>_<index>_<cell label>`.

    A module-level function that reads the trial's own config: Tune stores the dirname creator in every trial's
    saved state, so a closure over the grid's cells made each trial's state as large as the grid (a 5,000-cell
    sweep's experiment state reached 2.6 GB and the driver's memory grew with the square of the trials)."""
    return f"{trial.trial_id}_{trial.config['cell_index']:05d}_{trial.config['cell_label']}"


# SweepSpec fields keyed by model name (each checked by `validate` to name only models the sweep runs)
PER_MODEL_OPTIONS = ("model_hparams", "model_pretrain_seeds", "model_finetune_seeds", "model_peft", "model_training")


@dataclass
class SweepResult:
    experiment: str
    experiment_id: str
    parent_run_id: str | None
    total_cells: int
    skipped: int
    finished: int
    failed: int
    trial_results: list = field(default_factory=list)  # the final Tune result of each trial (metrics, timings)
    wall_seconds: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C (SIGINT): the parent run is KILLED; rerun to finish the rest


def run_sweep(spec: SweepSpec, experiment: str | None = None, tracking_uri: str | None = None,
              max_concurrent: int | None = None, out=sys.stdout, *, execute=None) -> SweepResult:
    """Run the cells of `spec` not yet FINISHED in `experiment` (default: the spec's name).

    `execute`: computes one cell's outcome in the trial (default `seedlab.run.trial.execute_trial`); the
    benchmarks pass one that skips training, to time the sweep around it."""
    import ray

    from seedlab.store.contract import client, finished_trial_runs, get_or_create_experiment, resolve_tracking_uri
    from seedlab.run.trial import trial_key

    spec.validate()
    spec.check_models()
    experiment = experiment or spec.name
    uri = resolve_tracking_uri(tracking_uri)
    store = client(uri)
    experiment_id = get_or_create_experiment(store, experiment, uri)
    if spec.pretrained_families():  # stage 1: the seed families that do not exist yet
        from seedlab.run.pretrain_stage import StageResources, run_pretrain_stage

        stage = run_pretrain_stage(families=spec.pretrained_families(), config_by_size=spec.pretrain,
                                   experiment=f"{experiment}-pretrain",
                                   tracking_uri=uri, resources=StageResources(cpus_per_trial=spec.cpus_per_trial),
                                   max_failures=spec.max_failures, max_concurrent=max_concurrent, out=out)
        if stage.failed:
            raise SeedlabError(f"{stage.failed} pretraining families failed (experiment {stage.experiment!r})")
        if len(stage.run_ids) < stage.total:  # neither failed nor finished: the stage was stopped (Ctrl-C)
            print(f"[{spec.name}] interrupted in the pretraining stage ({len(stage.run_ids)} of {stage.total} "
                  "families pretrained); run the same command again to go on", file=out, flush=True)
            return SweepResult(experiment, experiment_id, None, 0, 0, 0, 0, interrupted=True)
    choices, pending = {}, []
    if spec.tuning is not None:  # reuse finished tuning stages before deciding whether anything must run
        from seedlab.run.tuning import find_choice

        for t in spec.tasks:
            for m in spec.models:
                found = find_choice(spec.tuning, t, m, spec.hparams_for(m), spec.data, spec.pretrained, store, experiment_id)
                if found:
                    choices[(t, m)] = found
                    print(f"[{spec.name}] tuning {t}/{m}: reusing the finished choice {found.hparams}", file=out, flush=True)
                else:
                    pending.append((t, m))
    done = finished_trial_runs(store, experiment_id)
    if not pending:
        cells = spec.cells(choices)
        todo = [c for c in cells if trial_key(c) not in done] if done else cells
        print(f"[{spec.name}] experiment {experiment!r} at {uri}: {len(cells)} cells, "
              f"{len(cells) - len(todo)} already finished, {len(todo)} to run", file=out, flush=True)
        if not todo:
            _mark_orphans(store, experiment_id, spec.name, None, out)
            return SweepResult(experiment, experiment_id, None, len(cells), len(cells), 0, 0)

    from seedlab.run.ray_runtime import init_ray

    init_ray(out)
    use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    params = {"profile": spec.name, "tasks": ",".join(spec.tasks), "models": ",".join(spec.models),
              "methods": ",".join(spec.methods),
              "pretrain_seeds": ",".join(map(str, spec.pretrain_seeds)),
              **{option: ";".join(f"{m}:{','.join(map(str, v))}" for m, v in getattr(spec, option).items())
                 for option in ("model_pretrain_seeds", "model_finetune_seeds") if getattr(spec, option)},
              "finetune_seeds": ",".join(map(str, spec.finetune_seeds)), "cells": len(spec.cells()), "use_gpu": use_gpu,
              **{f"hp_{k}": v for k, v in spec.hparams.items()},
              **{f"hp_{m}_{k}": v for m, o in spec.model_hparams.items() for k, v in o.items()},
              **{f"data_{k}": v for k, v in spec.data.items()}}
    from seedlab.store.contract import start_sweep_run

    parent = start_sweep_run(store, experiment_id, spec.name, params)
    print(f"[{spec.name}] sweep run {parent}", file=out, flush=True)
    _mark_orphans(store, experiment_id, spec.name, parent, out)
    try:
        return _run_parented(spec, experiment, experiment_id, uri, store, parent, use_gpu, choices, pending, done,
                             max_concurrent, out, execute)
    except KeyboardInterrupt:  # Ctrl-C outside Tune's own handling (before the trials, or a second Ctrl-C)
        _interrupted(store, spec.name, parent, out, "before every trial had run")
        return SweepResult(experiment, experiment_id, parent, 0, 0, 0, 0, interrupted=True)
    except BaseException:
        from seedlab.store.contract import retry

        with contextlib.suppress(Exception):
            retry(store.set_terminated, parent, "FAILED")
        raise


def _run_parented(spec, experiment, experiment_id, uri, store, parent, use_gpu, choices, pending, done,
                  max_concurrent, out, execute) -> SweepResult:
    """The part of `run_sweep` that runs under its parent run: tuning stages, then the seed stage's trials."""
    from ray import tune

    from seedlab.store.contract import git_commit, retry
    from seedlab.run.trial import run_trial, trial_key

    if pending:
        from seedlab.run.tuning import tune_hyperparameters

        for t, m in pending:
            choices[(t, m)] = tune_hyperparameters(spec.tuning, t, m, spec.hparams_for(m), spec.data, spec.pretrained, store,
                                                   experiment_id, uri, spec.name, parent, spec.resources(use_gpu), out,
                                                   pretrain_key=spec.pretrain_key(m, spec.pretrain_seeds_for(m)[0]),
                                                   pretrain_seed=spec.pretrain_seeds_for(m)[0])
    cells = spec.cells(choices)
    todo = [c for c in cells if trial_key(c) not in done] if done else cells
    if pending:
        print(f"[{spec.name}] seed stage: {len(cells)} cells, {len(cells) - len(todo)} already finished, "
              f"{len(todo)} to run", file=out, flush=True)
        if not todo:
            retry(store.set_terminated, parent, "FINISHED")
            return SweepResult(experiment, experiment_id, parent, len(cells), len(cells), 0, 0)
    context = {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent, "sweep": spec.name,
               "git_commit": git_commit()}
    progress = SweepProgress(spec.name, len(todo), out)
    # Each cell as JSON text: a worker unpickles the list once per trial, and short strings unpickle ~100x
    # faster than the nested dicts they encode.
    rows = [json.dumps(c) for c in todo]
    trainable = tune.with_parameters(run_trial, cells=rows, execute=execute)
    tuner = tune.Tuner(
        tune.with_resources(trainable, spec.resources(use_gpu, [c["model"] for c in todo])),
        param_space={"context": context},
        tune_config=tune.TuneConfig(search_alg=cell_order([cell_label(c) for c in todo]), num_samples=len(todo),
                                    max_concurrent_trials=max_concurrent, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=f"{experiment}-{parent[:8]}",
            storage_path=os.environ.get("SEEDLAB_RAY_STORAGE"),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[tune_callback(progress)],
            verbose=0,
        ),
    )
    from seedlab.run.ray_runtime import pending_trials, trial_slots

    gpu_per_trial = min(spec.gpu_per_trial(m, use_gpu) for m in {c["model"] for c in todo})
    slots = min(trial_slots(spec.cpus_per_trial, gpu_per_trial), max_concurrent or len(todo), len(todo))
    started = time.time()
    with pending_trials(slots):  # every free slot starts its actor at once, and no slot's actor sits evicted
        results = tuner.fit()
    wall = time.time() - started
    failed = sum(1 for r in results if r.error is not None)
    completed = sum(1 for r in results if r.error is None and "run_id" in (r.metrics or {}))
    trial_results = [dict(r.metrics or {}) for r in results]
    if completed + failed < len(todo):  # Tune caught a Ctrl-C: it stopped the trials and returned
        _interrupted(store, spec.name, parent, out, f"after {completed} of {len(todo)} trials")
        return SweepResult(experiment, experiment_id, parent, len(cells), len(cells) - len(todo), completed, failed,
                           trial_results, wall, interrupted=True)
    retry(store.set_terminated, parent, "FAILED" if failed else "FINISHED")
    print(f"[{spec.name}] finished: {len(todo) - failed} trials logged, {failed} failed "
          f"(experiment {experiment!r})", file=out, flush=True)
    return SweepResult(experiment, experiment_id, parent, len(cells), len(cells) - len(todo), len(todo) - failed,
                       failed, trial_results, wall)


def _mark_orphans(store, experiment_id: str, sweep: str, new_run: str | None, out) -> None:
    """Mark KILLED the parent runs of this sweep left RUNNING by drivers that are gone."""
    from seedlab.store.contract import mark_orphaned_sweep_runs

    for run_id, driver in mark_orphaned_sweep_runs(store, experiment_id, sweep, new_run):
        print(f"[{sweep}] the sweep run {run_id} was left RUNNING by a driver that is gone ({driver}): "
              "marked KILLED", file=out, flush=True)


def _interrupted(store, sweep: str, parent: str, out, when: str) -> None:
    from seedlab.store.contract import mark_killed

    mark_killed(store, parent, f"Stopped by Ctrl-C (SIGINT) {when}. Run the same command again to run the "
                               "cells not finished yet (finished ones are skipped).")
    print(f"[{sweep}] interrupted {when}: the trials were stopped and the sweep run {parent} is marked KILLED. "
          "To resume, run the same command again: the finished cells are skipped.", file=out, flush=True)


def sweep_main(profiles: dict[str, SweepSpec], default_experiment: str, argv=None) -> int:
    """The command line every sweep file shares: --profile, --experiment, --tracking-uri, --dry-run."""
    parser = argparse.ArgumentParser(description="Run a seedlab sweep")
    parser.add_argument("--profile", default="smoke", help=f"one of: {', '.join(profiles)}")
    parser.add_argument("--experiment", help="MLflow experiment name (default: <sweep>-<profile>)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlruns)")
    parser.add_argument("--max-concurrent", type=int, help="cap on trials running at once")
    parser.add_argument("--tasks", help="comma-separated tasks, overriding the profile's")
    parser.add_argument("--models", help="comma-separated models, overriding the profile's")
    parser.add_argument("--methods", help=f"comma-separated mitigation methods ({', '.join(METHODS)}), "
                                          "overriding the profile's")
    parser.add_argument("--pretrain-seeds", help="comma-separated pretraining seeds, overriding the profile's")
    parser.add_argument("--finetune-seeds", help="comma-separated fine-tuning seeds, overriding the profile's")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the grid; launch nothing")
    args = parser.parse_args(argv)
    from seedlab.run.ray_runtime import quiet_process

    quiet_process()  # before MLflow or Ray is first used
    try:
        if args.profile not in profiles:
            raise choice_error("profile", args.profile, list(profiles))
        spec = _with_overrides(profiles[args.profile], args)
        spec.validate()
        if args.max_concurrent is not None and args.max_concurrent < 1:
            raise SeedlabError(f"invalid --max-concurrent {args.max_concurrent} (valid: an integer >= 1)")
        experiment = args.experiment or f"{default_experiment}-{args.profile}"
        if args.dry_run:
            cells = spec.cells()
            print(f"{spec.name}: {len(cells)} cells -> experiment {experiment!r}")
            from seedlab.run.trial import run_name

            for cell in cells:
                print(f"  {run_name(cell)}")
            return 0
        result = run_sweep(spec, experiment, args.tracking_uri, args.max_concurrent)
    except SeedlabError as exc:
        print(f"seedlab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the sweep had a parent run: nothing to mark
        result = SweepResult(args.experiment or "", "", None, 0, 0, 0, 0, interrupted=True)
    if result.interrupted:
        import shlex

        command = [Path(sys.executable).name, sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
        print(f"resume with: {shlex.join(command)}", flush=True)
        return 130  # the shell's code for a command stopped by SIGINT
    return 1 if result.failed else 0


def _with_overrides(spec: SweepSpec, args) -> SweepSpec:
    """Command-line axis overrides (validated by `SweepSpec.validate` like the profile's own values)."""
    from dataclasses import replace

    def seeds(text: str, flag: str) -> tuple[int, ...]:
        try:
            return tuple(int(s) for s in text.split(","))
        except ValueError:
            raise SeedlabError(f"invalid {flag} {text!r} (valid: comma-separated non-negative integers)") from None

    changes = {}
    if args.tasks:
        changes["tasks"] = tuple(t.strip() for t in args.tasks.split(","))
    if args.models:  # a subset of the profile's models keeps their per-model settings and drops the others'
        changes["models"] = tuple(m.strip() for m in args.models.split(","))
        for option in PER_MODEL_OPTIONS:
            changes[option] = {m: v for m, v in getattr(spec, option).items() if m in changes["models"]}
    if args.methods:
        changes["methods"] = tuple(m.strip() for m in args.methods.split(","))
    if args.pretrain_seeds:
        changes["pretrain_seeds"] = seeds(args.pretrain_seeds, "--pretrain-seeds")
    if args.finetune_seeds:  # for every model: the profile's per-model lists give way to the command line's
        changes["finetune_seeds"] = seeds(args.finetune_seeds, "--finetune-seeds")
        changes["model_finetune_seeds"] = {}
    return replace(spec, **changes)


__all__ = ["SweepSpec", "run_sweep", "sweep_main", "BERT_SIZES", "TASKS"]
