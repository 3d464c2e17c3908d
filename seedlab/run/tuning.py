"""The tuning stage: choose hyperparameters per (task, model) before the seed stage.

As Zhong et al. tune batch size x learning rate on an 80/20 split of train before running seeds, each
(task, model) gets a Ray Tune search over `TuningSpec.search_space` (Ray Tune domains: `tune.choice`,
`tune.loguniform`, `tune.grid_search`, ...), evaluated on a held-out part of the TRAINING split
(`seedlab.data.tasks.holdout_split`; the evaluation split is never seen), each configuration with a few
fine-tuning seeds. The criterion is the task's headline metric, averaged over those seeds (higher is
better). Search: "random"/"grid" (Ray's BasicVariantGenerator) or "optuna" (TPE, model-based); ASHA
may stop configurations early, treating each finished seed as one step (tuning stages only).

Recorded in MLflow: one run per tuning trial (seedlab.kind=tuning) and one choice run
(seedlab.kind=tuning_choice) per (task, model) with the chosen values as params and the criterion,
keyed by a hash of everything that defines the search, so a rerun reuses a finished tuning stage.
Seed-stage runs carry the tag `seedlab.tuning_choice` = the choice run's id.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field

from seedlab.errors import SeedlabError, choice_error
from seedlab.train.finetune import Hyperparameters

from seedlab.store.contract import TAG_TUNING_CHOICE, TAG_TUNING_KEY  # noqa: F401 (re-exported)
ALGORITHMS = ("random", "grid", "optuna")


@dataclass(frozen=True)
class TuningSpec:
    search_space: dict  # hyperparameter name -> Ray Tune domain (or a constant)
    algorithm: str = "random"
    num_samples: int = 8  # configurations tried (per grid point for "grid")
    seeds: tuple[int, ...] = (0, 1)  # fine-tuning seeds per configuration
    holdout: float = 0.2  # share of the training split held out for the criterion
    asha: bool = False  # early stopping over seeds (successive halving)

    def validate(self) -> None:
        unknown = set(self.search_space) - set(Hyperparameters.__dataclass_fields__)
        if unknown:
            raise SeedlabError(f"unknown hyperparameter(s) in the search space {sorted(unknown)} "
                               f"(valid: {', '.join(Hyperparameters.__dataclass_fields__)})")
        if not self.search_space:
            raise SeedlabError("the tuning search space is empty (give at least one hyperparameter)")
        if self.algorithm not in ALGORITHMS:
            raise choice_error("search algorithm", self.algorithm, ALGORITHMS)
        if self.num_samples < 1 or not self.seeds:
            raise SeedlabError("tuning needs num_samples >= 1 and at least one seed")

    def key(self, task: str, model: str, base_hparams: dict, data: dict, pretrained: bool) -> str:
        """A deterministic id of the search: equal searches reuse one finished tuning stage."""
        canonical = json.dumps({"task": task, "model": model, "space": {k: repr(v) for k, v in
                                sorted(self.search_space.items())}, "algorithm": self.algorithm,
                                "num_samples": self.num_samples, "seeds": list(self.seeds), "holdout": self.holdout,
                                "asha": self.asha, "base": base_hparams, "data": data, "pretrained": pretrained},
                               sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]


@dataclass
class TuningChoice:
    task: str
    model: str
    hparams: dict  # the full hyperparameters for the seed stage
    criterion: str
    value: float
    run_id: str
    reused: bool = False
    trials: list = field(default_factory=list)


def run_tuning_trial(config: dict) -> None:
    """Ray Tune trainable: one configuration, its seeds in turn, reporting the running mean criterion."""
    from ray import tune

    from seedlab.run.trial import execute_trial, run_name
    from seedlab.store.contract import KIND_TUNING, TAG_KIND, TAG_SWEEP, client, log_run, tuning_run_name

    ctx, base = config["context"], config["cell"]
    hparams = {**base["hparams"], **{k: config[k] for k in ctx["space_keys"]}}
    criterion = f"eval_{ctx['metric']}"
    values = []
    for step, seed in enumerate(ctx["seeds"], start=1):
        cell = {**base, "finetune_seed": seed, "hparams": hparams, "data": {**base["data"], "holdout": ctx["holdout"]}}
        outcome = execute_trial(cell, tracking_uri=ctx["tracking_uri"])
        values.append(outcome.metrics[criterion])
        mean = sum(values) / len(values)
        params = {**outcome.params, "tuning_seeds": ",".join(map(str, ctx["seeds"][:step]))}
        if step == len(ctx["seeds"]):  # one MLflow run per configuration, with every seed's value
            metrics = [(f"holdout_{ctx['metric']}", v, i) for i, v in enumerate(values)] + [("criterion", mean, 0)]
            log_run(client(ctx["tracking_uri"]), ctx["experiment_id"], tuning_run_name(run_name(cell)), params,
                    metrics, {TAG_KIND: KIND_TUNING, TAG_SWEEP: ctx["sweep"], TAG_TUNING_KEY: ctx["tuning_key"]}, {},
                    parent_run_id=ctx["parent_run_id"])
        tune.report({"criterion": mean, "seeds_done": step, **{k: hparams[k] for k in ctx["space_keys"]}})


def find_choice(spec: TuningSpec, task: str, model: str, base_hparams: dict, data: dict, pretrained: bool,
                store, experiment_id: str) -> TuningChoice | None:
    """The finished choice of an identical search in this experiment, if there is one."""
    from seedlab.data.tasks import get_task
    from seedlab.store.contract import KIND_TUNING_CHOICE, first_run

    key = spec.key(task, model, base_hparams, data, pretrained)
    run = first_run(store, [experiment_id], KIND_TUNING_CHOICE, tags={TAG_TUNING_KEY: key})
    if run is None:
        return None
    chosen = {k: type(getattr(Hyperparameters(), k))(v) for k, v in run.data.params.items()
              if k in Hyperparameters.__dataclass_fields__}
    return TuningChoice(task, model, chosen, get_task(task).metrics[0], run.data.metrics.get("criterion", float("nan")),
                        run.info.run_id, reused=True)


def tune_hyperparameters(spec: TuningSpec, task: str, model: str, base_hparams: dict, data: dict, pretrained: bool,
                         store, experiment_id: str, tracking_uri: str, sweep: str, parent_run_id: str,
                         resources, out=sys.stdout, pretrain_key: str | None = None,
                         pretrain_seed: int = 0) -> TuningChoice:
    """Run the search for (task, model) (Ray must be initialised) and record the choice.

    `pretrain_seed` and `pretrain_key`: the one seed family the search fine-tunes from (a sweep passes its
    first pretraining seed and that family's checkpoint key)."""
    from ray import tune

    from seedlab.data.tasks import get_task
    from seedlab.store.contract import KIND_TUNING_CHOICE, TAG_KIND, log_run, tuning_choice_run_name

    spec.validate()
    key = spec.key(task, model, base_hparams, data, pretrained)
    metric = get_task(task).metrics[0]

    print(f"[tuning] {task}/{model}: {spec.algorithm} search, {spec.num_samples} configurations x "
          f"{len(spec.seeds)} seeds on a {spec.holdout:.0%} hold-out of train", file=out, flush=True)
    search_alg, scheduler = None, None
    if spec.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric="criterion", mode="max", seed=0)
    if spec.asha:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="seeds_done", max_t=len(spec.seeds), grace_period=1)
    base_cell = {"task": task, "model": model, "pretrain_seed": pretrain_seed, "hparams": dict(base_hparams), "data": dict(data),
                 "pretrained": pretrained, **({"pretrain_key": pretrain_key} if pretrain_key else {})}
    context = {"tracking_uri": tracking_uri, "experiment_id": experiment_id, "parent_run_id": parent_run_id,
               "sweep": sweep, "tuning_key": key, "seeds": list(spec.seeds), "holdout": spec.holdout,
               "metric": metric, "space_keys": sorted(spec.search_space)}
    tuner = tune.Tuner(
        tune.with_resources(run_tuning_trial, resources),
        param_space={**spec.search_space, "cell": base_cell, "context": context},
        tune_config=tune.TuneConfig(metric="criterion", mode="max", num_samples=spec.num_samples,
                                    search_alg=search_alg, scheduler=scheduler),
        run_config=tune.RunConfig(name=f"tune-{task}-{model}-{key[:8]}", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    )
    results = tuner.fit()
    # Only configurations that ran every seed compete (ASHA's early-stopped ones are recorded, not chosen).
    complete = [r for r in results if r.error is None and r.metrics and r.metrics.get("seeds_done") == len(spec.seeds)]
    if not complete:
        raise SeedlabError(f"tuning {task}/{model}: no configuration finished all {len(spec.seeds)} seeds")
    best = max(complete, key=lambda r: r.metrics["criterion"])
    chosen = {**base_hparams, **{k: best.config[k] for k in spec.search_space}}
    chosen = Hyperparameters(**chosen).as_params()
    run_id = log_run(store, experiment_id, tuning_choice_run_name(task, model),
                     {**chosen, "task": task, "model": model, "configurations_tried": len(results)},
                     [("criterion", float(best.metrics["criterion"]), 0)],
                     {TAG_KIND: KIND_TUNING_CHOICE, TAG_TUNING_KEY: key,
                      "seedlab.criterion": f"mean holdout {metric} over seeds {list(spec.seeds)}, max"},
                     {}, parent_run_id=parent_run_id)
    print(f"[tuning] {task}/{model}: chose {({k: chosen[k] for k in spec.search_space})} "
          f"({metric} {best.metrics['criterion']:.4f} on hold-out)", file=out, flush=True)
    return TuningChoice(task, model, chosen, metric, float(best.metrics["criterion"]), run_id,
                        trials=[dict(r.metrics or {}) for r in results])
