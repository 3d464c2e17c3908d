"""Does averaging seeds remove the instability? Accuracy and instability of ensembles of k runs.

An ensemble of k runs averages their class probabilities and predicts the argmax (the first, i.e. smallest,
class id on exact ties); without probabilities it takes the majority vote of the k labels (the same tie rule),
and the JSD is undefined. For k = 1, 2, 4, 8, ... up to the number of runs n:

* the ensembles compared are *disjoint*: one random partition of the runs into ``g = n // k`` groups of k (the
  ``n - g k`` left-over runs sit out), so two ensembles share no run, like two ensembles trained with fresh seeds;
  overlapping subsets would share members and understate the instability;
* per partition: the mean task score of the g ensembles, and, when g >= 2, their instability: the SD of the
  score over ensembles (ddof as given), PD (mean pairwise disagreement) and JSD (mean pairwise Jensen-Shannon
  divergence of the averaged probabilities), Du & Nguyen's measures;
* ``n_partitions`` random partitions; the point value is the mean over partitions and the interval their
  2.5 and 97.5 percentiles: the spread over the choice of runs that form the ensembles (a resampling of the
  runs without replacement, as each ensemble needs distinct runs).

With k = 1 every partition is the set of runs itself, so the values equal the model's instability measures
(``agreement.instability_measures``). ``removed`` is ``1 - PD_k / PD_1`` (the share of the disagreement the
ensemble removes) and ``runs_per_ensemble`` = k is the cost: k trainings and k forward passes per prediction.

Known answer (``tests/stats/test_ensembles.py``): with one-hot probabilities, binary labels and runs that give
instance i label 1 with probability p_i independently, an ensemble of k predicts 1 with probability
``Q_i = P(Binomial(k, p_i) > k/2)`` (ties go to label 0), so its expected accuracy is ``mean_i P(ensemble =
gold_i)`` and its expected PD ``mean_i 2 Q_i (1 - Q_i)``.

RNG: ``gen = np.random.default_rng(rng)``; per size k > 1 in the order given, ``n_partitions`` times
``gen.permutation(n)`` (the first g k entries, in rows of k, are the groups); k = 1 draws nothing (every
partition is the set of runs, so it is computed once and its interval is a point).

Pure numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seedlab.stats.agreement import label_counts, mean_pairwise_jsd, pairwise_disagreement
from seedlab.stats.metrics import score as metric_score

__all__ = ["ensemble_sizes", "ensemble_predict", "seed_ensembles"]

ESTIMATOR = ("ensembles of k runs (probabilities averaged, else majority vote), disjoint groups of random "
             "partitions of the runs; intervals over the partitions")


def ensemble_sizes(n_runs: int) -> list[int]:
    """The ensemble sizes k = 1, 2, 4, ... up to n_runs.

    Parameters
    ----------
    n_runs : int
        Runs available (>= 1).

    Returns
    -------
    list of int
        Powers of two not above ``n_runs``.

    References
    ----------
    Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive Uncertainty Estimation using Deep
    Ensembles", NeurIPS 2017 (ensembles of independently seeded runs).
    """
    if int(n_runs) != n_runs or n_runs < 1:
        raise ValueError(f"n_runs must be an integer >= 1, got {n_runs}")
    out, k = [], 1
    while k <= n_runs:
        out.append(k)
        k *= 2
    return out


def ensemble_predict(preds, probs=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The prediction of one ensemble of runs.

    Parameters
    ----------
    preds : array-like of shape (k, m)
        The member runs' labels (used when ``probs`` is None).
    probs : array-like of shape (k, m, C), optional
        Their class probabilities.

    Returns
    -------
    labels : ndarray of shape (m,)
        argmax of the mean probabilities, or the majority vote; ties to the smallest class id.
    mean_probs : ndarray of shape (m, C) or None
        The averaged probabilities (None without ``probs``).

    References
    ----------
    Lakshminarayanan et al., NeurIPS 2017 (probability averaging); Breiman, "Bagging predictors", Machine
    Learning 24, 1996 (majority vote).
    """
    if probs is not None:
        mean = np.asarray(probs, dtype=np.float64).mean(axis=0)
        return mean.argmax(axis=-1), mean
    p = np.asarray(preds)
    return label_counts(p, n_classes=int(p.max()) + 1).argmax(axis=1), None


def _group_predict(preds, probs, groups, n_classes):
    """Ensemble labels (g, m) and mean probabilities (g, m, C) for index groups (g, k)."""
    if probs is not None:
        mean = probs[groups].mean(axis=1)
        return mean.argmax(axis=-1), mean
    votes = np.stack([label_counts(preds[gr], n_classes=n_classes) for gr in groups])  # (g, m, C)
    return votes.argmax(axis=-1), None


def seed_ensembles(preds, probs, labels, *, sizes=None, metric: str = "accuracy", n_partitions: int = 100,
                   ddof: int = 0, rng=0) -> dict[str, Any]:
    """Score and instability of ensembles of k seeds for k = 1, 2, 4, ..., with intervals over the choice of runs.

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Integer labels of n >= 2 runs on m instances.
    probs : array-like of shape (n, m, C) or None
        Their class probabilities; None: majority vote (and no JSD).
    labels : array-like of shape (m,)
        Gold labels.
    sizes : sequence of int, optional
        Ensemble sizes (default ``ensemble_sizes(n)``).
    metric : str, default="accuracy"
        The task metric (``seedlab.stats.metrics``) scored per ensemble.
    n_partitions : int, default=100
        Random partitions of the runs per size.
    ddof : {0, 1}, default=0
        Of the SD over ensembles (0: population SD, as Du & Nguyen).
    rng : int, numpy.random.Generator or None, default=0
        Seed of ``np.random.default_rng`` or a Generator (draw order in the module docstring).

    Returns
    -------
    dict
        ``combine`` ("mean probabilities" or "majority vote"), ``metric``, ``n_runs``, ``n_partitions``, ``ddof``,
        ``rng_seed`` and ``sizes``: per k {k, n_ensembles (g), score, sd, pd, jsd (each {point, ci_low, ci_high};
        the instability ones None when g < 2, jsd None without probabilities), removed (1 - PD_k / PD_1 or None),
        runs_per_ensemble}.

    References
    ----------
    Lakshminarayanan, Pritzel & Blundell, NeurIPS 2017 (deep ensembles); Du & Nguyen, "Measuring the
    Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778), SD, PD, JSD.
    """
    p = np.asarray(preds)
    if p.ndim != 2 or p.shape[0] < 2 or p.dtype.kind not in "iu":
        raise ValueError(f"preds must be integer labels of shape (n_runs >= 2, m), got {p.shape} {p.dtype}")
    n, m = p.shape
    pr = None
    if probs is not None:
        pr = np.asarray(probs, dtype=np.float64)
        if pr.ndim != 3 or pr.shape[:2] != (n, m):
            raise ValueError(f"probs must have shape ({n}, {m}, C), got {pr.shape}")
    y = np.asarray(labels)
    if y.shape != (m,):
        raise ValueError(f"labels must have shape ({m},), got {y.shape}")
    sizes = ensemble_sizes(n) if sizes is None else [int(k) for k in sizes]
    if not sizes or any(k < 1 or k > n for k in sizes):
        raise ValueError(f"sizes must lie in 1..{n} (the number of runs), got {sizes}")
    if int(n_partitions) != n_partitions or n_partitions < 1:
        raise ValueError(f"n_partitions must be an integer >= 1, got {n_partitions}")
    seed = None if rng is None or isinstance(rng, np.random.Generator) else int(rng)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n_classes = int(max(p.max(), y.max() if y.dtype.kind in "iu" else 0)) + 1 if pr is None else pr.shape[2]

    def summary(values):
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0 or not np.all(np.isfinite(v)):
            return None
        lo, hi = np.quantile(v, [0.025, 0.975])
        return {"point": float(v.mean()), "ci_low": float(lo), "ci_high": float(hi)}

    out = []
    for k in sizes:
        g = n // k
        rows = {"score": [], "sd": [], "pd": [], "jsd": []}
        for _ in range(1 if k == 1 else int(n_partitions)):  # k = 1: every partition is all runs
            groups = np.arange(n)[:, None] if k == 1 else gen.permutation(n)[: g * k].reshape(g, k)
            ens, mean = _group_predict(p, pr, groups, n_classes)
            scores = [metric_score(metric, y, e) for e in ens]
            rows["score"].append(float(np.mean(scores)))
            if g >= 2:
                rows["sd"].append(float(np.std(scores, ddof=ddof)) if g > ddof else np.nan)
                rows["pd"].append(pairwise_disagreement(ens))
                if mean is not None:
                    rows["jsd"].append(mean_pairwise_jsd(mean))
        out.append({"k": k, "n_ensembles": g, "runs_per_ensemble": k, **{name: summary(v) for name, v in rows.items()}})
    base = next((s["pd"]["point"] for s in out if s["k"] == 1 and s["pd"] is not None), None)
    for s in out:
        s["removed"] = (None if base is None or base == 0 or s["pd"] is None
                        else float(1.0 - s["pd"]["point"] / base))
    return {"combine": "mean probabilities" if pr is not None else "majority vote", "metric": metric, "n_runs": n,
            "n_partitions": int(n_partitions), "ddof": int(ddof), "rng_seed": seed, "sizes": out}
