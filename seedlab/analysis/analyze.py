"""From loaded runs to the analysis result: a JSON-ready dict built only from `seedlab.stats` functions.

The result's shape is the JSON Schema ``seedlab/analysis/schema.json`` (``load_schema()``), versioned by
``SCHEMA``: every key, which are required, and which objects admit no other keys. The tests validate real
analyses against it and check that every key the consumers (`render`, `publish`, `seedlab.report`) read is
in it. In short::

    {"schema": SCHEMA, "experiment": str, "tracking_uri": str,
     "runs": {"by_status", "duplicates", "unfinished", "missing_cells"},
     "tasks": {task: {"n_instances", "is_regression", "metrics", "design", "models",
                      ["validity", "zhong"] (classification), ["representations"], "multibootstrap",
                      ["methods"], ["variance_attribution"], "expected_max", "expected_max_note",
                      "aso", ["seed_budget", "multiplicity", "ensembles"] (classification)}}}

The four sections after expected_max (almost stochastic order, how many seeds, predictive multiplicity, seed
ensembles) were added without a version bump: they are optional keys of the schema, so results written before
them still validate, and no key a consumer read before changed. So was each model's "pairwise_consistency"
(Bui/Zhou et al.'s readings per pair of runs; consumers read it with `.get`).

Every number is a float, None where undefined (with the reason beside it). `sd` is the population SD over
runs (ddof=0, Du & Nguyen's choice); `ddof` is recorded beside it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import combinations, permutations

import numpy as np

from seedlab.errors import SeedlabError
from seedlab.stats.metrics import score
from seedlab.data.catalog import model_order
from seedlab.stats.agreement import (agreement_matrix, agreement_pairwise, consistency_all, fleiss_kappa, instability_measures,
                                     measure_agreement, pairwise_consistency, subsample_insensitivity, summarize_metric)
from seedlab.stats.representations import REPRESENTATION_DISTANCES, pairwise_layer_distances
from seedlab.stats.design import RunTable, design_report
from seedlab.stats.multibootstrap import multibootstrap
from seedlab.stats.aso import DEFAULT_THRESHOLD
from seedlab.stats.zhong import (decay_lower_bound, finetune_share, fisher_bh_decay, instance_accuracy, momentum,
                                 noise_decomposition)
from seedlab.data.tasks import TASKS

# version 2: the shape is a JSON Schema (schema.json); zhong.noise[model] gained `finetune_share`
SCHEMA = "seedlab.analysis/2"
DDOF = 0


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The JSON Schema of the analysis result (``schema.json`` shipped in this package; its version is SCHEMA)."""
    return json.loads(resources.files("seedlab.analysis").joinpath("schema.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class AnalysisOptions:
    """Settings of one analysis; the defaults are those of `seedlab analyze`.

    compare: (baseline, intervention) models of the Multi-Bootstrap comparison, or None.
    n_bootstrap: resamples of the Multi-Bootstrap, of the methods comparison and of the expected-max bands.
    seed: the int seed of every resampling procedure (passed as ``rng=`` to each `seedlab.stats` function).
    paired: pair the comparison by pretraining seed. False, as `seedlab.stats.multibootstrap`: pairing is
        valid only when a seed id is the same pretrained checkpoint in both arms, and different sizes share
        none (`--paired` turns it on).
    decay_bootstrap: instance-bootstrap replicates of the decay bound's bias correction.
    aso_threshold, aso_confidence: Almost Stochastic Order's decision threshold on eps_min and confidence level
        (before the Bonferroni correction); deepsig's defaults.
    rashomon_epsilon: the seed Rashomon set holds the runs within this much of the best run's score.
    top_instances: how many of the most seed-sensitive instances each model lists.
    ensemble_partitions: random partitions of the runs per ensemble size.
    """

    compare: tuple[str, str] | None = None
    n_bootstrap: int = 1000
    seed: int = 0
    paired: bool = False
    decay_bootstrap: int = 200
    aso_threshold: float = DEFAULT_THRESHOLD
    aso_confidence: float = 0.95
    rashomon_epsilon: float = 0.01
    top_instances: int = 10
    ensemble_partitions: int = 100


def task_metrics(task: str, table: RunTable) -> tuple[str, ...]:
    if task in TASKS:
        return TASKS[task].metrics
    return ("pearson", "spearman") if table.is_regression else ("accuracy",)


def run_names(table: RunTable, rows) -> list[str]:
    return [f"{table.task}/{table.model[r]}/p{table.pretrain_seed[r]}/f{table.finetune_seed[r]}" for r in rows]


def summarize_model(table: RunTable, model: str, metrics: tuple[str, ...]) -> dict:
    """Macro figures (metric mean/SD/min/max over runs) and micro figures (agreement) for one model."""
    rows = np.flatnonzero(table.model == model)
    preds = table.predictions[rows]
    values = {name: [score(name, table.labels, p) for p in preds] for name in metrics}
    out = {
        "n_runs": int(len(rows)),
        "metrics": {name: {**summarize_metric(v, ddof=DDOF), "values": v} for name, v in values.items()},
        "consistency_all": None, "agreement_pairwise": None, "fleiss_kappa": None, "instability": None,
        "pairwise_consistency": None,
    }
    if len(rows) >= 2:  # Bui/Zhou et al.'s readings per pair of runs; Pearson between runs for a regression task
        out["pairwise_consistency"] = pairwise_consistency(preds, None if table.is_regression else table.labels,
                                                           regression=table.is_regression)
    if table.is_regression:
        out["agreement_note"] = "label agreement is undefined for a regression task"
    elif len(rows) < 2:
        out["agreement_note"] = "agreement needs at least 2 runs"
    else:
        probs = None if table.probs is None else table.probs[rows]
        out["consistency_all"] = consistency_all(preds)
        out["agreement_pairwise"] = agreement_pairwise(preds)
        out["fleiss_kappa"] = fleiss_kappa(preds)
        out["instability"] = instability_measures(preds, probs, values[metrics[0]], ddof=DDOF)
        out["agreement_matrix"] = {"run_names": run_names(table, rows), "run_ids": table.run_ids[rows].tolist(),
                                   "matrix": agreement_matrix(preds)}
    return out


def zhong_sections(table: RunTable, options: AnalysisOptions) -> dict:
    """Zhong et al. 2021 on balanced grids: instance accuracy, noise decomposition, decay bounds, momentum."""
    grids, notes = {}, {}
    for model in model_order(table.models()):
        grid = table.grid(model).complete()
        grids[model] = grid
        if grid.note:
            notes[model] = grid.note
    out = {"design_notes": notes, "instance_accuracy": {}, "noise": {}, "decay": [], "decay_unavailable": [],
           "momentum": []}
    for model, grid in grids.items():
        out["instance_accuracy"][model] = instance_accuracy(grid.correct)
        P, F, _ = grid.shape
        if P >= 2 and F >= 2:
            nd = noise_decomposition(grid.correct)
            out["noise"][model] = {"estimator": "unbiased recursive (Zhong et al. Theorem 2)", "P": P, "F": F,
                                   "means": nd.means, "conditioned_on_bias": nd.conditioned,
                                   "finetune_share": finetune_share(nd.means["pretrain_var"], nd.means["finetune_var"])}
        else:
            out["noise"][model] = {"unavailable": f"needs >= 2 pretraining and >= 2 fine-tuning seeds (P={P}, F={F})"}
    rng = np.random.default_rng(options.seed)
    for small, large in permutations(grids, 2):
        single = [m for m in (small, large) if grids[m].n_runs < 2]
        if single:  # Decay'(t) splits each model's runs in two: a single run has no random baseline
            out["decay_unavailable"].append({"from": small, "to": large, "unavailable": (
                f"{' and '.join(single)} {'has' if len(single) == 1 else 'have'} a single run; the random "
                "baseline Decay'(t) splits a model's runs in two halves, so each model needs >= 2 runs")})
            continue
        bound = decay_lower_bound(grids[small].correct, grids[large].correct, n_bootstrap=options.decay_bootstrap,
                                  rng=rng, names=(small, large))
        fisher = fisher_bh_decay(grids[small].correct, grids[large].correct)
        out["decay"].append({
            "from": small, "to": large, "estimator": "Zhong et al. Theorem 1 lower bound, bootstrap bias-corrected",
            **bound.as_dict(),
            "fisher_bh": {k: fisher[k] for k in ("fraction", "n_declared", "n_instances", "alpha")},
        })
    ordered = list(grids)
    for s1, s2, s3 in combinations(ordered, 3):
        if grids[s2].shape[0] < 2:
            out["momentum"].append({"sizes": [s1, s2, s3], "unavailable": "middle model needs >= 2 pretraining seeds"})
            continue
        mo = momentum(grids[s1].correct, grids[s2].correct, grids[s3].correct)
        out["momentum"].append({"sizes": [s1, s2, s3], **{k: mo[k] for k in
                                ("buckets", "overall", "weighted_pearson", "weighted_spearman", "split")}})
    return out


def bootstrap_section(table: RunTable, metric: str, options: AnalysisOptions) -> dict:
    """Multi-Bootstrap: a CI per model and, for the compared pair, the difference with all three resampling
    schemes (seeds and examples; seeds only; examples only) to show how overconfident each single source is."""
    per_model = {}
    for model in table.models():
        rows = table.model == model
        res = multibootstrap(table.labels, table.predictions[rows], table.pretrain_seed[rows], score=metric,
                             n_bootstrap=options.n_bootstrap, rng=options.seed)
        per_model[model] = res.baseline.as_dict()
    out = {"metric": metric, "n_boot": options.n_bootstrap, "seed": options.seed, "models": per_model,
           "estimator": "Multi-Bootstrap (Sellam et al. 2022), percentile 95% intervals"}
    if options.compare:
        base, inter = options.compare
        for name in (base, inter):
            if name not in per_model:
                raise SeedlabError(f"--compare: unknown model {name!r} for task {table.task!r} "
                                   f"(valid: {', '.join(table.models())})")
        b, i = table.model == base, table.model == inter
        schemes = {"seeds_and_examples": (True, True), "seeds_only": (True, False), "examples_only": (False, True)}
        comparison = {"baseline": base, "intervention": inter, "paired": options.paired}
        for name, (seeds, examples) in schemes.items():
            res = multibootstrap(table.labels, table.predictions[b], table.pretrain_seed[b], table.predictions[i],
                                 table.pretrain_seed[i], score=metric, n_bootstrap=options.n_bootstrap,
                                 paired=options.paired, resample_seeds=seeds, resample_examples=examples,
                                 rng=options.seed)
            comparison[name] = res.as_dict()
        out["comparison"] = comparison
    return out


def representation_section(table: RunTable, reps: dict) -> dict:
    """Du & Nguyen's representation-level instability: per layer, the mean distance over run pairs, for
    SVCCA, orthogonal Procrustes and linear CKA; plus how well the three layer-wise curves agree and
    whether instability rises with depth (their validity checks (b) and (c))."""
    from scipy.stats import spearmanr

    out = {}
    for model in model_order(table.models()):
        run_ids = [r for r in table.run_ids[table.model == model] if r in reps]
        if len(run_ids) < 2:
            out[model] = {"unavailable": f"{len(run_ids)} run(s) logged representations; pairs need >= 2"}
            continue
        stacked = np.stack([reps[r] for r in run_ids]).astype(np.float64)  # (n, L, m, d)
        curves = {name: pairwise_layer_distances(stacked, measure=name) for name in REPRESENTATION_DISTANCES}
        layers = np.arange(stacked.shape[1])
        out[model] = {
            "n_runs": len(run_ids), "n_layers": int(stacked.shape[1]), "measures": list(REPRESENTATION_DISTANCES),
            "by_layer": curves,
            "agreement_between_measures": measure_agreement(curves) if len(layers) >= 3 else None,
            "rises_with_depth_spearman": {name: float(spearmanr(layers, c)[0]) if len(layers) >= 3 else None
                                          for name, c in curves.items()},
        }
    return out


def condition_table(table: RunTable) -> RunTable:
    """One 'model' per condition: when runs differ in mitigation method or one model's runs differ in
    hyperparameter config, every (model, method, config) becomes its own row label (e.g. `mini/mixout`,
    `mini/hp-3bb9ee50`), so each per-model section compares like with like. Configs that differ only between
    models (a per-size learning rate) keep the plain model names. A single-condition table comes back unchanged."""
    from dataclasses import replace

    methods = table.methods_per_run()
    configs = table.hp_config if table.hp_config is not None else np.full(table.n_runs, "")
    configs_vary = any(len(set(configs[table.model == m])) > 1 for m in set(table.model))
    if len(set(methods)) <= 1 and not configs_vary:
        return table
    labels = [m if meth == "standard" and len(set(methods)) <= 1 else f"{m}/{meth}" for m, meth in zip(table.model, methods)]
    if configs_vary:
        labels = [f"{label}/hp-{c}" for label, c in zip(labels, configs)]
    return replace(table, model=np.asarray(labels), method=None, hp_config=None)


def design_sections(table: RunTable, metric: str, options: AnalysisOptions) -> dict:
    """Issue-7 figures over the original axes: methods compared on equal seed counts, variance attributed to
    hyperparameter config / pretraining seed / fine-tuning seed, and expected best score vs number of trials."""
    from seedlab.stats.metrics import batched
    from seedlab.stats.expected_max import expected_max_curve
    from seedlab.stats.method_comparison import compare_methods
    from seedlab.stats.variance import variance_components

    out = {}
    values = batched(metric)(table.labels[None, :], table.predictions)
    if table.method is not None and not table.is_regression:
        out["methods"] = {}
        for model in model_order(table.models()):
            if len(table.subset(model=model).methods()) >= 2:
                try:
                    out["methods"][model] = compare_methods(table, model=model, metric=metric,
                                                            n_bootstrap=options.n_bootstrap, rng=options.seed).as_dict()
                except ValueError as exc:
                    out["methods"][model] = {"unavailable": str(exc)}
    tuned = [] if table.hp_config is None else [  # models whose runs span several configs
        m for m in model_order(table.models()) if len(set(table.hp_config[table.model == m])) >= 2]
    if tuned:
        out["variance_attribution"] = {}
        for model in tuned:
            rows = table.model == model
            try:
                out["variance_attribution"][model] = variance_components(
                    values[rows], table.hp_config[rows], table.pretrain_seed[rows], table.finetune_seed[rows]).as_dict()
            except ValueError as exc:
                out["variance_attribution"][model] = {"unavailable": str(exc)}
    out["expected_max"] = {}
    conditions = condition_table(table)  # per model, method and config
    for label in model_order(conditions.models()):
        rows = conditions.model == label
        if rows.sum() >= 2:
            out["expected_max"][label] = expected_max_curve(values[rows], n_bootstrap=options.n_bootstrap,
                                                            rng=options.seed).as_dict()
    out["expected_max_note"] = ("scores on the evaluation split; with a separate validation split this is Dodge "
                                "et al.'s expected validation performance")
    return out


# --------------------------------------------------------------------------------------------------
# issue 15: almost stochastic order, seed budget, predictive multiplicity, seed ensembles
# --------------------------------------------------------------------------------------------------

def _aso_family(labels: list[str], values: np.ndarray, rows_of, options: AnalysisOptions, rng) -> dict:
    """ASO over every ordered pair of the labelled conditions (one Bonferroni family); unavailable with why."""
    from seedlab.stats.aso import aso_pairs

    scores = {label: values[rows_of(label)] for label in labels}
    few = [f"{label} ({len(v)} run)" for label, v in scores.items() if len(v) < 2]
    if len(scores) < 2:
        return {"unavailable": f"needs at least two models to compare; this has {len(scores)} "
                               f"({', '.join(scores) or 'none'})"}
    if few:
        return {"unavailable": f"every side needs >= 2 runs (scores over seeds); too few: {', '.join(few)}"}
    return aso_pairs(scores, threshold=options.aso_threshold, confidence_level=options.aso_confidence,
                     n_bootstrap=options.n_bootstrap, rng=rng)


def aso_section(table: RunTable, metric: str, options: AnalysisOptions) -> dict:
    """Almost Stochastic Order of the runs' scores: every ordered pair of models (the standard method's runs
    when there are several methods) and, per model, every ordered pair of its methods, each family with its
    own Bonferroni correction."""
    from seedlab.stats.aso import ESTIMATOR
    from seedlab.stats.metrics import batched

    values = batched(metric)(table.labels[None, :], table.predictions)
    conditions = condition_table(table)
    methods = table.methods_per_run()
    rng = np.random.default_rng(options.seed)
    standard = methods == "standard" if len(set(methods)) > 1 else np.ones(table.n_runs, dtype=bool)
    labels = [c for c in model_order(conditions.models()) if np.any((conditions.model == c) & standard)]
    out = {"estimator": ESTIMATOR, "metric": metric, "threshold": options.aso_threshold,
           "confidence_level": options.aso_confidence, "n_bootstrap": options.n_bootstrap, "seed": options.seed,
           "models": _aso_family(labels, values, lambda c: (conditions.model == c) & standard, options, rng)}
    if table.method is not None:
        out["methods"] = {}
        for model in model_order(table.models()):
            mine = [c for c in model_order(conditions.models()) if np.any((conditions.model == c) & (table.model == model))]
            if len(set(methods[table.model == model])) >= 2:
                out["methods"][model] = _aso_family(mine, values, lambda c: conditions.model == c, options, rng)
    return out


def mean_run_cost(rows, resources: dict) -> tuple[float | None, str]:
    """Mean device seconds per run over `rows`' run ids and the unit they are in (GPU/CPU-hours)."""
    found = [resources[r] for r in rows if r in resources]
    seconds = [f["seconds"] for f in found if f.get("seconds") is not None]
    devices = {str(f.get("device") or "").split(":")[0] for f in found} - {""}
    unit = "CPU-hours" if devices == {"cpu"} else "GPU-hours" if devices and "cpu" not in devices else "device-hours"
    if len(seconds) < len(rows):
        return None, unit
    return float(np.mean(seconds)), unit


BUDGET_P = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def seed_budget_section(table: RunTable, multiboot: dict, resources: dict, options: AnalysisOptions) -> dict:
    """Variance components of accuracy per model (pretraining seed, fine-tuning seed, examples) from its
    balanced grid, the Multi-Bootstrap half-width they predict for other designs, and, per model pair, the
    smallest difference the comparison detects with power 0.8."""
    from seedlab.stats.seed_budget import ESTIMATOR, predicted_half_width, predicted_power, seed_variance

    out = {"estimator": ESTIMATOR, "metric": "accuracy", "confidence": 0.95, "power": 0.8, "models": {},
           "pairs": []}
    pilots = {}
    for model in model_order(table.models()):
        grid = table.grid(model).complete()
        P, F, m = grid.shape
        try:
            v = seed_variance(grid.correct)
        except ValueError as exc:
            out["models"][model] = {"unavailable": str(exc)}
            continue
        pilots[model] = v
        finetunes = [1] if F == 1 else sorted({1, 2, 4, F})
        seconds, unit = mean_run_cost(table.run_ids[table.model == model], resources)
        mb = multiboot["models"].get(model) if multiboot["metric"] == "accuracy" else None
        observed = None if mb is None or mb["ci_low"] is None else (mb["ci_high"] - mb["ci_low"]) / 2
        out["models"][model] = {
            **v.as_dict(), "pilot_half_width": predicted_half_width(v, P=P, F=F) if P >= 2 else None,
            "multibootstrap_half_width": observed,
            "curves": {"P": list(BUDGET_P), "F": finetunes,
                       "half_width": [[predicted_half_width(v, P=p, F=f) for p in BUDGET_P] for f in finetunes]},
            "seconds_per_run": seconds, "unit": unit,
        }
    names = list(pilots)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            F = 1 if 1 in (pilots[a].F, pilots[b].F) else min(pilots[a].F, pilots[b].F)
            mde = [_detectable(lambda d: predicted_power(pilots[a], pilots[b], delta=d, P=p, F=F), out["power"])
                   for p in BUDGET_P]
            out["pairs"].append({"a": a, "b": b, "F": F, "P": list(BUDGET_P), "detectable_difference": mde})
    return out


def _detectable(power_at, target: float) -> float:
    """The smallest accuracy difference detected with `target` power (bisection; power rises with delta)."""
    lo, hi = 0.0, 1.0
    if power_at(hi) < target:
        return float("nan")
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power_at(mid) < target else (lo, mid)
    return hi


INSTANCE_ID = re.compile(r"(dev|train)-\d{6}")


@lru_cache(maxsize=8)
def _task_rows(task: str, data_dir: str) -> dict | None:
    """instance id -> (text_a, text_b) of a task's local data (both splits), or None when it is not local.
    Cached per (task, data dir): one read per analysis process."""
    from seedlab.data.tasks import load_task

    try:
        train, evaluation = load_task(task, source="local")
    except SeedlabError:
        return None
    rows = {}
    for split in (train, evaluation):  # whole columns through Arrow: iterating a Dataset's column is row by row
        cols = split.select_columns(["instance_id", "text_a", "text_b"]).to_dict()
        rows.update(zip(cols["instance_id"], zip(cols["text_a"], cols["text_b"])))
    return rows


def instance_texts(task: str, instance_ids) -> tuple[dict, str | None]:
    """The text of each instance id from the task's local data (seedlab.data.tasks), and a note when there is none."""
    ids = [str(i) for i in instance_ids]
    if task not in TASKS:
        return {}, f"task {task!r} is not in seedlab.data.tasks: instance ids only"
    if not all(INSTANCE_ID.fullmatch(i) for i in ids):
        return {}, f"instance ids are not {task}'s row ids (dev-NNNNNN): ids only"
    from seedlab.data.paths import local_data_dir

    rows = _task_rows(task, str(local_data_dir()))
    if rows is None:
        return {}, f"no local data for {task!r} ($SEEDLAB_DATA): instance ids only"
    found = {i: rows[i] for i in ids if i in rows}
    return found, None if len(found) == len(ids) else f"{len(ids) - len(found)} id(s) not in the local {task} data"


def multiplicity_section(table: RunTable, metric: str, options: AnalysisOptions) -> dict:
    """Per model: the seed Rashomon set's ambiguity and discrepancy (at every set size, and at epsilon), the
    flip-rate distribution and the most seed-sensitive instances with their text; churn between models."""
    from seedlab.stats.metrics import batched
    from seedlab.stats.multiplicity import ESTIMATOR, churn_matrix, flip_rates, most_flipping, rashomon_curve

    values = batched(metric)(table.labels[None, :], table.predictions)
    spec = TASKS.get(table.task)
    classes = list(spec.labels) if spec is not None and spec.labels else None
    n_classes = int(max(table.predictions.max(), table.labels.max())) + 1
    out = {"estimator": ESTIMATOR, "metric": metric, "epsilon": options.rashomon_epsilon, "classes": classes,
           "models": {}}
    wanted = {}
    for model in model_order(table.models()):
        rows = np.flatnonzero(table.model == model)
        if len(rows) < 2:
            out["models"][model] = {"unavailable": f"needs >= 2 runs to compare predictions ({len(rows)} run)"}
            continue
        names = run_names(table, rows)
        curve = rashomon_curve(table.predictions[rows], values[rows], epsilon=options.rashomon_epsilon)
        flips = flip_rates(table.predictions[rows], n_classes=n_classes)
        top = most_flipping(flips, top=options.top_instances)
        out["models"][model] = {
            "n_runs": len(rows), "reference_run": names[curve["reference"]], "at_epsilon": curve["at_epsilon"],
            "curve": {"runs": [names[i] for i in curve["order"]],
                      **{k: curve[k] for k in ("gap", "ambiguity", "discrepancy", "disagreement")}},
            "flip": {k: flips[k] for k in ("histogram", "n_unstable", "share_unstable", "mean_flip_rate",
                                           "mean_disagreement")},
            "instances": [{"instance_id": str(table.instance_ids[k]), "label": int(table.labels[k]),
                           "counts": flips["counts"][k].tolist(), "flip_rate": float(flips["flip_rate"][k]),
                           "disagreement": float(flips["disagreement"][k])} for k in top],
        }
        wanted.update({str(table.instance_ids[k]): None for k in top})
    texts, note = instance_texts(table.task, list(wanted)) if wanted else ({}, None)
    for entry in out["models"].values():
        for inst in entry.get("instances", []):
            a, b = texts.get(inst["instance_id"], (None, None))
            inst["text_a"], inst["text_b"] = a, (b or None) if a is not None else None
    out["texts_note"] = note
    have = [m for m in model_order(table.models())]
    out["churn"] = churn_matrix({m: table.predictions[table.model == m] for m in have}) if len(have) >= 2 else None
    return out


def ensembles_section(table: RunTable, metric: str, resources: dict, options: AnalysisOptions) -> dict:
    """Per model: score and instability of ensembles of k = 1, 2, 4, ... of its runs, and their cost."""
    from seedlab.stats.ensembles import ESTIMATOR, seed_ensembles

    out = {"estimator": ESTIMATOR, "metric": metric,
           "combine_note": None if table.probs is not None else
           "probabilities were not logged: ensembles take the majority vote of their runs' labels (ties to the "
           "smallest class id), and the JSD is unavailable",
           "models": {}}
    for model in model_order(table.models()):
        rows = np.flatnonzero(table.model == model)
        if len(rows) < 2:
            out["models"][model] = {"unavailable": f"needs >= 2 runs to form an ensemble ({len(rows)} run)"}
            continue
        probs = None if table.probs is None else table.probs[rows]
        res = seed_ensembles(table.predictions[rows], probs, table.labels, metric=metric,
                             n_partitions=options.ensemble_partitions, ddof=DDOF, rng=options.seed)
        seconds, unit = mean_run_cost(table.run_ids[rows], resources)
        for size in res["sizes"]:
            size["hours"] = None if seconds is None else size["k"] * seconds / 3600
        out["models"][model] = {**res, "unit": unit}
    return out


def analyze_table(task: str, table: RunTable, options: AnalysisOptions | None = None,
                  representations: dict | None = None, resources: dict | None = None) -> dict:
    """One task's analysis. `resources`: run id -> {"seconds", "device"} (the loader's run_resources), the cost
    of a run for the seed budget and the ensembles."""
    options = options or AnalysisOptions()
    resources = resources or {}
    metrics = task_metrics(task, table)
    extra = design_sections(table, metrics[0], options)
    aso = aso_section(table, metrics[0], options)
    table = condition_table(table)
    result = {
        "n_instances": int(len(table.instance_ids)),
        "is_regression": bool(table.is_regression),
        "metrics": list(metrics),
        "design": design_report(table),
        "models": {model: summarize_model(table, model, metrics) for model in model_order(table.models())},
    }
    if not table.is_regression:
        result["validity"] = {}
        for model in table.models():
            rows = table.model == model
            if rows.sum() >= 2:
                probs = None if table.probs is None else table.probs[rows]
                result["validity"][model] = subsample_insensitivity(
                    table.predictions[rows], probs, rng=np.random.default_rng(options.seed), labels=table.labels)
        result["zhong"] = zhong_sections(table, options)
    if representations:
        result["representations"] = representation_section(table, representations)
    result["multibootstrap"] = bootstrap_section(table, metrics[0], options)
    result.update(extra)
    result["aso"] = aso
    if not table.is_regression:
        result["seed_budget"] = seed_budget_section(table, result["multibootstrap"], resources, options)
        result["multiplicity"] = multiplicity_section(table, metrics[0], options)
        result["ensembles"] = ensembles_section(table, metrics[0], resources, options)
    return result


def analyze(loaded, options: AnalysisOptions | None = None) -> dict:
    """The whole analysis of a `LoadedExperiment`, JSON-ready (NaN becomes null: undefined)."""
    return jsonable({
        "schema": SCHEMA,
        "experiment": loaded.experiment,
        "tracking_uri": loaded.tracking_uri,
        "runs": {"by_status": loaded.run_status, "duplicates": loaded.duplicates, "unfinished": loaded.unfinished,
                 "missing_cells": loaded.missing_cells},
        "tasks": {task: analyze_table(task, table, options, loaded.representations.get(task),
                                      getattr(loaded, "run_resources", None))
                  for task, table in loaded.tables.items()},
    })


def jsonable(value):
    """numpy scalars and arrays -> plain Python, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value

