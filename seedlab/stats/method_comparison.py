"""Comparing instability-mitigation methods under several instability measures (Du & Nguyen 2023).

The methods themselves are implemented in ``seedlab.train.mitigation``; this module only compares the runs
they produced.

Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778), section on
re-assessing mitigation methods (METHODS.md section 2): run each method (standard fine-tuning, Mixout,
layer-wise LR decay, re-initialising top layers, weight decay toward the pretrained weights) with several
seeds, compute every instability measure per method, rank the methods under each measure (lower
instability = better = rank 1), compare the rankings of every pair of measures with Kendall's tau, and
bootstrap the seeds.

Choices (documented, tested):

* **Equal seed counts.** Every method is measured on the same number of runs k = the smallest number of
  runs any method has (of the chosen model). Each method keeps its first k runs in sorted
  ``(pretrain_seed, finetune_seed)`` order; the others are reported in ``dropped``. (Pairwise measures and
  the SD are functions of n, e.g. the population SD (ddof=0) is shrunk by sqrt((n-1)/n), and
  ``consistency_all`` falls with n, so unequal n would bias the comparison.)
* **Measures**: ``sd`` (SD of the task metric over runs, ddof=0 by default as in the authors' code), ``pd``
  (pairwise disagreement), ``jsd`` (mean pairwise Jensen-Shannon divergence; only when the table has
  probabilities) and ``one_minus_fleiss_kappa``; point values are exactly
  ``agreement.instability_measures`` on the k selected runs. Classification only.
* **Ranks**: ``scipy.stats.rankdata(values, method="average")`` (ties share the mean rank). Kendall's
  tau-b between the measures' values for every pair of measures (``agreement.ranking_agreement``); with
  two methods tau is always +-1 and says nothing.
* **Bootstrap over seeds, without self-pairs** (``bootstrap="exclude_self_pairs"``, the default). Each
  replicate resamples, independently per method (unpaired), k of its k runs with replacement; run i is
  drawn w_i times. Every measure is written as a mean over pairs of *distinct* runs::

      PD*   = sum_{i != j} w_i w_j PD_ij  / sum_{i != j} w_i w_j    (PD_ij: disagreement of runs i and j)
      JSD*  likewise with JSD_ij;
      SD*^2 = (k - 1) / (k - ddof) * sum_{i != j} w_i w_j (x_i - x_j)^2 / 2 / sum_{i != j} w_i w_j
      1 - kappa*: Pbar* = 1 - PD*, p_c* = sum_i w_i q_ic / k (q_ic: share of instances run i labels c),
                  P_e* = sum_c p_c*^2, kappa* = (Pbar* - P_e*) / (1 - P_e*)

  where ``sum_{i != j} w_i w_j = k^2 - sum_i w_i^2``. Pairs of two copies of the same run (distance 0)
  are left out, so a replicate is a weighted U-statistic whose expectation is the point value's, and with
  all w_i = 1 each formula gives the point value exactly (the SD factor restores the ddof scale: the
  ddof=0 variance is (k-1)/k times the mean over distinct pairs of (x_i - x_j)^2 / 2).

  The naive alternative (``bootstrap="with_self_pairs"``, kept only to show the pitfall of METHODS.md)
  computes the measures on the k resampled copies as if they were k runs, so the ~(k-1)/2 pairs of
  copies of one run (expected; out of k(k-1)/2) enter with distance 0: PD*, JSD* and SD*^2 are biased
  down by about a factor (1 - 1/k), which shifts the intervals below the point value.

  A replicate in which every draw is the same run has no pair: it is undefined and left out (counted in
  ``n_undefined``; probability k^(1-k)).
* **Share first**: for each measure, the share of replicates in which each method has the lowest
  instability; a tie of t methods gives each 1/t, so the shares sum to 1 over methods.
* **Intervals**: percentile intervals (alpha/2, 1 - alpha/2) of each method's replicates, with their mean
  and SD.

RNG: ``gen = np.random.default_rng(rng)``; for each method in sorted order,
``idx = gen.integers(0, k, size=(n_bootstrap, k))``, indexing its selected runs in sorted (pretrain_seed,
finetune_seed) order; nothing else is drawn.

Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.special import xlogy
from scipy.stats import rankdata

from seedlab.stats import metrics as _metrics
from seedlab.stats.agreement import instability_measures, ranking_agreement
from seedlab.stats.design import RunTable

__all__ = ["MethodComparison", "compare_methods", "pair_summaries", "weighted_measures", "BOOTSTRAP_SCHEMES"]

BOOTSTRAP_SCHEMES = ("exclude_self_pairs", "with_self_pairs")
ESTIMATOR = ("Du & Nguyen 2023 instability measures per mitigation method on equal seed counts; ranks "
             "(lower = more stable = 1), Kendall tau-b between measures; unpaired bootstrap over runs")


# --------------------------------------------------------------------------------------------------
# pairwise building blocks and the weighted (bootstrap) measures
# --------------------------------------------------------------------------------------------------


def _entropy(p: np.ndarray) -> np.ndarray:
    return -np.sum(xlogy(p, p), axis=-1)


def pair_summaries(preds, probs=None, values=None) -> dict[str, np.ndarray | None]:
    """Per-run-pair summaries of k runs that every instability measure is a function of.

    Parameters
    ----------
    preds : array-like of shape (k, m)
        Predicted labels of k >= 2 runs on m instances.
    probs : array-like of shape (k, m, C), optional
        Class probabilities (for the JSD).
    values : array-like of shape (k,), optional
        One task-metric value per run (for the SD).

    Returns
    -------
    dict
        ``pd`` (k, k): mean disagreement of runs i, j over instances; ``jsd`` (k, k): their mean JSD over
        instances (None without ``probs``); ``half_sq`` (k, k): ``(x_i - x_j)^2 / 2`` of the metric values
        (None without ``values``); ``q`` (k, C): the share of instances each run gives each label (labels
        coded by ``np.unique``). Diagonals are 0. Cost O(k^2 m C), memory O(k m C).

    Notes
    -----
    ``PD_ij = (1/m) sum_k [yhat_ik != yhat_jk]``; ``JSD_ij = (1/m) sum_k [H((p_ik + p_jk)/2) - (H(p_ik) +
    H(p_jk))/2]`` (natural log); the weighted measures of ``weighted_measures`` are means of these over pairs.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778).
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[0] < 2 or preds.shape[1] < 1:
        raise ValueError(f"preds must be 2-D (runs >= 2, instances >= 1), got shape {preds.shape}")
    k, m = preds.shape
    _, codes = np.unique(preds, return_inverse=True)
    codes = codes.reshape(k, m)
    C = int(codes.max()) + 1
    q = np.stack([np.bincount(codes[i], minlength=C) for i in range(k)]).astype(np.float64) / m
    pd = np.zeros((k, k))
    for i in range(k - 1):
        pd[i, i + 1 :] = np.mean(preds[i][None, :] != preds[i + 1 :], axis=1)
    pd = pd + pd.T
    jsd = None
    if probs is not None:
        pr = np.asarray(probs, dtype=np.float64)
        if pr.ndim != 3 or pr.shape[:2] != (k, m):
            raise ValueError(f"probs must have shape ({k}, {m}, C) to match preds, got {pr.shape}")
        h = _entropy(pr).mean(axis=1)  # (k,) mean entropy over instances
        jsd = np.zeros((k, k))
        for i in range(k - 1):
            hm = _entropy(0.5 * (pr[i][None] + pr[i + 1 :])).mean(axis=1)
            jsd[i, i + 1 :] = np.maximum(hm - 0.5 * (h[i] + h[i + 1 :]), 0.0)
        jsd = jsd + jsd.T
    half_sq = None
    if values is not None:
        x = np.asarray(values, dtype=np.float64)
        if x.shape != (k,):
            raise ValueError(f"values must have one value per run, shape ({k},), got {x.shape}")
        half_sq = 0.5 * (x[:, None] - x[None, :]) ** 2
    return {"pd": pd, "jsd": jsd, "half_sq": half_sq, "q": q}


def weighted_measures(summ: dict, w, *, ddof: int = 0, exclude_self_pairs: bool = True) -> dict[str, np.ndarray]:
    """Instability measures of resampled runs given as draw counts, from their pair summaries.

    Parameters
    ----------
    summ : dict
        The output of ``pair_summaries`` for k runs.
    w : array-like of shape (B, k) or (k,)
        How often each run was drawn in each replicate.
    ddof : {0, 1}, default=0
        Of the SD.
    exclude_self_pairs : bool, default=True
        True: means over pairs of distinct runs, weighted by w_i w_j (unbiased for the point value);
        False: the naive measures of the k resampled copies, self-pairs included (biased down).

    Returns
    -------
    dict of ndarray of shape (B,)
        ``pd``, ``jsd`` (when ``summ`` has it), ``sd`` (when ``summ`` has values) and
        ``one_minus_fleiss_kappa``. Undefined replicates (one distinct run, self-pairs excluded) are NaN.

    Notes
    -----
    With ``D = sum_{i != j} w_i w_j = k^2 - sum_i w_i^2``::

        PD*   = sum_{i != j} w_i w_j PD_ij / D          (JSD* likewise)
        SD*^2 = (k - 1) / (k - ddof) * sum_{i != j} w_i w_j (x_i - x_j)^2 / 2 / D
        kappa* = (Pbar* - P_e*) / (1 - P_e*),  Pbar* = 1 - PD*,  P_e* = sum_c (sum_i w_i q_ic / k)^2

    With all w_i = 1 each formula gives the point value exactly.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778); Fleiss,
    "Measuring nominal scale agreement among many raters", Psychological Bulletin 76(5), 1971.
    """
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    k = summ["pd"].shape[0]
    if w.shape[1] != k:
        raise ValueError(f"w must have one count per run ({k}), got shape {w.shape}")
    n = w.sum(axis=1)
    if exclude_self_pairs:
        den = n * n - np.sum(w * w, axis=1)
    else:
        den = n * n - n  # ordered pairs of different copies, copies of one run included (distance 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(den > 0, 1.0 / np.where(den > 0, den, 1.0), np.nan)

    def pair_mean(d):
        return np.einsum("bi,ij,bj->b", w, d, w) * inv

    out = {"pd": pair_mean(summ["pd"])}
    if summ["jsd"] is not None:
        out["jsd"] = pair_mean(summ["jsd"])
    if summ["half_sq"] is not None:
        if exclude_self_pairs:
            var = pair_mean(summ["half_sq"]) * (k - 1.0) / (k - ddof)
        else:  # plain variance of the n resampled copies with ddof
            var = np.einsum("bi,ij,bj->b", w, summ["half_sq"], w) / (n * (n - ddof))
        out["sd"] = np.sqrt(np.maximum(var, 0.0))
    p_c = (w @ summ["q"]) / n[:, None]
    p_e = np.sum(p_c * p_c, axis=1)
    pbar = 1.0 - out["pd"]
    degenerate = np.count_nonzero(p_c > 0, axis=1) <= 1  # one label everywhere: kappa := 1 (as fleiss_kappa)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(degenerate, 1.0, (pbar - p_e) / np.where(degenerate, 0.5, 1.0 - p_e))
    out["one_minus_fleiss_kappa"] = np.where(np.isnan(pbar), np.nan, 1.0 - kappa)
    return out


# --------------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodComparison:
    """Result of ``compare_methods``.

    Attributes:
        model, metric: what was compared; methods: sorted method names; measures: measure names used.
        k: runs per method used (the smallest count); n_available: {method: runs it had}.
        selected / dropped: {method: [{"run_id", "pretrain_seed", "finetune_seed"}]}.
        values: {method: {measure: point value on the k selected runs}}.
        ranks: {measure: {method: rank}} (1 = most stable; ties averaged).
        ranking_agreement: {"measures", "tau", "pvalue", "pairs": [{a, b, tau, pvalue}]} (Kendall tau-b).
        intervals: {method: {measure: {point, mean, sd, ci_low, ci_high}}} from the bootstrap.
        share_first: {measure: {method: share of replicates ranking it first}}.
        n_undefined: {method: replicates left out as undefined}.
        n_bootstrap, bootstrap, alpha, ddof: settings; rng_seed: the int seed given (None for a Generator);
        samples: {method: {measure: (n_bootstrap,) array}}.

    ``as_dict`` writes ``n_bootstrap`` as ``bootstrap.n_boot`` (the analysis result schema's key).
    """

    model: str
    metric: str
    methods: tuple
    measures: tuple
    k: int
    n_available: dict
    selected: dict
    dropped: dict
    values: dict
    ranks: dict
    ranking_agreement: dict
    intervals: dict
    share_first: dict
    n_undefined: dict
    n_bootstrap: int
    bootstrap: str
    alpha: float
    rng_seed: int | None
    ddof: int
    samples: dict = field(default_factory=dict, repr=False)
    notes: tuple = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (bootstrap samples left out)."""
        return {
            "estimator": ESTIMATOR,
            "model": self.model,
            "metric": self.metric,
            "methods": list(self.methods),
            "measures": list(self.measures),
            "k": self.k,
            "n_available": dict(self.n_available),
            "selected": self.selected,
            "dropped": self.dropped,
            "values": self.values,
            "ranks": self.ranks,
            "ranking_agreement": self.ranking_agreement,
            "bootstrap": {
                "scheme": self.bootstrap,
                "n_boot": self.n_bootstrap,
                "alpha": self.alpha,
                "rng_seed": self.rng_seed,
                "intervals": self.intervals,
                "share_first": self.share_first,
                "n_undefined": dict(self.n_undefined),
            },
            "ddof": self.ddof,
            "notes": list(self.notes),
        }


def _metric_values(metric, labels: np.ndarray, preds: np.ndarray) -> tuple[str, np.ndarray]:
    if callable(metric):
        name = getattr(metric, "__name__", "custom")
        return name, np.array([float(metric(labels, p)) for p in preds])
    fn = _metrics.batched(metric)  # raises ValueError on an unknown name
    return str(metric), np.asarray(fn(labels[None, :], preds), dtype=np.float64)


def _share_first(vals: np.ndarray) -> np.ndarray:
    """vals (B, M), no NaN: per method, the share of rows in which it has the minimum (ties split)."""
    is_min = vals == vals.min(axis=1, keepdims=True)
    return (is_min / is_min.sum(axis=1, keepdims=True)).mean(axis=0)


def compare_methods(
    table: RunTable,
    *,
    model: str | None = None,
    metric: str | Callable = "accuracy",
    n_bootstrap: int = 1000,
    rng: int | np.random.Generator | None = 0,
    alpha: float = 0.05,
    bootstrap: str = "exclude_self_pairs",
    ddof: int = 0,
) -> MethodComparison:
    """Instability of each mitigation method (``table.method``) under SD, PD, JSD and 1 - Fleiss' kappa.

    Parameters
    ----------
    table : RunTable
        Runs of one classification task; ``table.method`` names each run's method (>= 2 methods).
    model : str, optional
        The model whose methods are compared (may be omitted when the table has one model).
    metric : str or callable, default="accuracy"
        Task-metric name from ``seedlab.stats.metrics`` (for the SD) or a callable ``f(labels, preds) -> float``.
    n_bootstrap : int, default=1000
        Bootstrap replicates (0 for none; then intervals and share_first are empty).
    rng : int, numpy.random.Generator or None, default=0
        Seed of ``np.random.default_rng``, or a Generator (order of draws: module docstring).
    alpha : float, default=0.05
        Percentile intervals at level 1 - alpha.
    bootstrap : {"exclude_self_pairs", "with_self_pairs"}, default="exclude_self_pairs"
        The resampling scheme; ``"with_self_pairs"`` is the naive, biased one (``BOOTSTRAP_SCHEMES``).
    ddof : {0, 1}, default=0
        Of the SD (0, the authors' population SD).

    Returns
    -------
    MethodComparison
        Point values on k equal seed counts, ranks, Kendall's tau between measures, bootstrap intervals.

    Notes
    -----
    Every method keeps its first k = min_method(runs) runs by (pretrain_seed, finetune_seed). Point values
    are ``agreement.instability_measures`` on those runs; ranks are ``scipy.stats.rankdata(method="average")``
    (1 = most stable); each replicate draws k of a method's k runs with replacement and evaluates the
    measures of ``weighted_measures`` (formulas there and in the module docstring).

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778): re-assessing
    mitigation methods; Kendall, "A new measure of rank correlation", Biometrika 30, 1938.
    """
    if not isinstance(table, RunTable):
        raise ValueError(f"table must be a RunTable, got {type(table).__name__}")
    if table.is_regression:
        raise ValueError(f"task {table.task!r} is regression; PD and Fleiss' kappa need class predictions")
    if bootstrap not in BOOTSTRAP_SCHEMES:
        raise ValueError(f"bootstrap must be one of {BOOTSTRAP_SCHEMES}, got {bootstrap!r}")
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap}")
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof}")
    if model is None:
        if len(table.models()) != 1:
            raise ValueError(f"the table has several models {table.models()}; pass model=")
        model = table.models()[0]
    if str(model) not in table.models():
        raise ValueError(f"unknown model {model!r} (valid: {', '.join(table.models())})")
    sub = table.subset(model=model)
    methods = tuple(sub.methods())
    if len(methods) < 2:
        raise ValueError(f"model {model!r} has runs under one method only {list(methods)}; need >= 2 to compare")
    meth = sub.methods_per_run()
    rows = {}
    for me in methods:
        idx = np.flatnonzero(meth == me)
        order = np.lexsort((sub.finetune_seed[idx], sub.pretrain_seed[idx]))
        rows[me] = idx[order]
    n_avail = {me: int(len(r)) for me, r in rows.items()}
    k = min(n_avail.values())
    if k < 2:
        raise ValueError(f"every method needs >= 2 runs; the smallest has {k} ({n_avail})")
    if n_bootstrap > 0 and k < 3:
        raise ValueError(f"the bootstrap needs >= 3 runs per method, got k={k}; pass n_bootstrap=0")

    def run_list(ix):
        return [{"run_id": str(sub.run_ids[i]), "pretrain_seed": int(sub.pretrain_seed[i]),
                 "finetune_seed": int(sub.finetune_seed[i])} for i in ix]

    selected = {me: run_list(rows[me][:k]) for me in methods}
    dropped = {me: run_list(rows[me][k:]) for me in methods}
    measures = ("sd", "pd") + (("jsd",) if sub.probs is not None else ()) + ("one_minus_fleiss_kappa",)

    values, summaries = {}, {}
    metric_name = None
    for me in methods:
        ix = rows[me][:k]
        preds = sub.predictions[ix]
        probs = None if sub.probs is None else sub.probs[ix]
        metric_name, mv = _metric_values(metric, sub.labels, preds)
        im = instability_measures(preds, probs, mv, ddof=ddof)
        values[me] = {ms: float(im[ms]) for ms in measures}
        if n_bootstrap > 0:
            summaries[me] = pair_summaries(preds, probs, mv)

    ranks = {ms: dict(zip(methods, rankdata([values[me][ms] for me in methods], method="average").tolist()))
             for ms in measures}
    ra = ranking_agreement({ms: {me: values[me][ms] for me in methods} for ms in measures})
    names = ra["measures"]
    agreement = {
        "measures": list(names),
        "tau": ra["tau"].tolist(),
        "pvalue": ra["pvalue"].tolist(),
        "pairs": [{"a": names[i], "b": names[j], "tau": float(ra["tau"][i, j]), "pvalue": float(ra["pvalue"][i, j])}
                  for i in range(len(names)) for j in range(i + 1, len(names))],
    }
    notes = []
    if len(methods) == 2:
        notes.append("two methods: Kendall's tau between measures can only be +1 or -1")
    if any(dropped[me] for me in methods):
        notes.append(f"equal seed counts: each method uses its first k={k} runs by (pretrain_seed, finetune_seed); "
                     f"dropped {sum(len(v) for v in dropped.values())} run(s)")

    intervals, share_first, n_undef, samples = {}, {}, {}, {}
    if n_bootstrap > 0:
        gen = np.random.default_rng(rng)
        for me in methods:
            idx = gen.integers(0, k, size=(int(n_bootstrap), k))
            w = np.zeros((int(n_bootstrap), k))
            np.add.at(w, (np.arange(int(n_bootstrap))[:, None], idx), 1.0)
            rep = weighted_measures(summaries[me], w, ddof=ddof, exclude_self_pairs=bootstrap == "exclude_self_pairs")
            samples[me] = {ms: rep[ms] for ms in measures}
            ok = ~np.isnan(rep["pd"])
            n_undef[me] = int((~ok).sum())
            intervals[me] = {}
            for ms in measures:
                s = rep[ms][ok]
                intervals[me][ms] = {
                    "point": values[me][ms],
                    "mean": float(s.mean()),
                    "sd": float(s.std(ddof=1)) if s.size > 1 else 0.0,
                    "ci_low": float(np.percentile(s, 100 * alpha / 2)),
                    "ci_high": float(np.percentile(s, 100 * (1 - alpha / 2))),
                }
        for ms in measures:
            mat = np.stack([samples[me][ms] for me in methods], axis=1)  # (B, M)
            good = ~np.isnan(mat).any(axis=1)
            share_first[ms] = dict(zip(methods, _share_first(mat[good]).tolist()))
    return MethodComparison(
        model=str(model), metric=str(metric_name), methods=methods, measures=measures, k=int(k),
        n_available=n_avail, selected=selected, dropped=dropped, values=values, ranks=ranks,
        ranking_agreement=agreement, intervals=intervals, share_first=share_first, n_undefined=n_undef,
        n_bootstrap=int(n_bootstrap), bootstrap=bootstrap, alpha=float(alpha),
        rng_seed=None if rng is None or isinstance(rng, np.random.Generator) else rng, ddof=int(ddof),
        samples=samples, notes=tuple(notes),
    )
