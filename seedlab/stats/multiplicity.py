"""How many individual predictions are an accident of the seed: predictive multiplicity, flip rates and churn.

Predictive multiplicity (Marx, Calmon & Ustun, "Predictive Multiplicity in Classification", ICML 2020): among
models that are almost equally good, how much do individual predictions differ? Here the competing models are
the runs of one model (seeds), and the "Rashomon set" at ``epsilon`` is the runs whose score is within
``epsilon`` of the best run's (the reference run h0, the empirical optimum of Marx et al.)::

    S(eps)          = {runs r : score_r >= score_h0 - eps}
    ambiguity(eps)  = (1/m) sum_k 1[exists r in S(eps): yhat_rk != yhat_h0,k]
    discrepancy(eps) = max_{r in S(eps)} (1/m) sum_k 1[yhat_rk != yhat_h0,k]

Both are step functions of eps with a step where a run joins the set, so they are reported exactly at every
run's gap ``score_h0 - score_r``. With eps covering every run, ambiguity = 1 - consistency_all.

Per-instance flip rate (how many instances change label across seeds, and how often): with ``n_kc`` the number
of runs that give instance k label c, ``flip_k = 1 - max_c n_kc / n`` (the share of runs that leave the modal
label); its distribution is the count of instances with ``j = n - max_c n_kc`` deviating runs, j = 0, 1, ...
The per-instance pairwise disagreement ``d_k = 1 - sum_c n_kc (n_kc - 1) / (n (n - 1))`` (the probability that
two runs differ on k) averages to PD (Du & Nguyen 2023).

Churn (Milani Fard, Cormier, Canini & Gupta, "Launch and Iterate: Reducing Prediction Churn", NeurIPS 2016):
the share of instances on which two models' predictions differ; between two models' runs, its mean over every
(run of A, run of B) pair: ``churn(A, B) = (1/(n_A n_B)) sum_{i, j} (1/m) sum_k 1[yhat^A_ik != yhat^B_jk]``
= ``1 - (1/m) sum_k sum_c p^A_kc p^B_kc`` with ``p_kc = n_kc / n``. Within one model the same over distinct pairs
is PD.

Known answers (``tests/stats/test_multiplicity.py``): when run r keeps instance k's base label with probability
``1 - q_k`` independently (binary), the deviating-run count is ``min(X, n - X)`` with ``X ~ Binomial(n, q_k)``, so
the histogram's expectation, ``E[d_k] = 2 q_k (1 - q_k)``, ambiguity over all runs ``1 - (1-q)^n - q^n`` and
churn ``q_A (1 - q_B) + q_B (1 - q_A)`` are exact.

Pure numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seedlab.stats.agreement import label_counts

__all__ = ["rashomon_curve", "flip_rates", "churn", "churn_matrix", "most_flipping"]

ESTIMATOR = ("seed Rashomon set: ambiguity and discrepancy (Marx et al. 2020) against the best run; per-instance "
             "flip rates; churn between runs (Milani Fard et al. 2016)")


def _labels(preds, min_runs: int = 1) -> np.ndarray:
    p = np.asarray(preds)
    if p.ndim != 2 or p.shape[0] < min_runs or p.shape[1] < 1:
        raise ValueError(f"preds must have shape (n_runs >= {min_runs}, m >= 1), got {p.shape}")
    return p


def rashomon_curve(preds, scores, *, epsilon: float = 0.01) -> dict[str, Any]:
    """Ambiguity and discrepancy of a model's runs against its best run, at every Rashomon-set size.

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Predicted labels of n >= 1 runs on m instances.
    scores : array-like of shape (n,)
        One score per run (higher = better); the best run is the reference (the first on ties).
    epsilon : float, default=0.01
        The Rashomon set reported as ``at_epsilon``: runs within ``epsilon`` of the best score (``inf``: all).

    Returns
    -------
    dict
        ``reference`` (run index), ``order`` (runs by gap), ``gap`` (best - score, ascending), ``ambiguity`` and
        ``discrepancy`` with the set of runs whose gap is at most that gap (one value per run, the steps of the
        curves), ``disagreement`` (each run's share of instances that differ from the reference, in ``order``),
        and ``at_epsilon`` = {epsilon, n_runs, ambiguity, discrepancy}.

    References
    ----------
    Marx, Calmon & Ustun, "Predictive Multiplicity in Classification", ICML 2020 (arXiv 1909.06677),
    Definitions 3 and 4.
    """
    p = _labels(preds)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (p.shape[0],) or not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be {p.shape[0]} finite numbers, one per run, got shape {s.shape}")
    if not epsilon >= 0:  # NaN fails too; inf (every run) is allowed
        raise ValueError(f"epsilon must be a number >= 0 (inf: every run), got {epsilon}")
    ref = int(np.argmax(s))
    gap = s[ref] - s
    order = np.lexsort((np.arange(len(s)), gap))  # by gap; the reference first (gap 0, first index on ties)
    order = np.concatenate([[ref], order[order != ref]])
    differs = p[order] != p[ref][None, :]  # (n, m)
    any_differs = np.logical_or.accumulate(differs, axis=0)
    disagreement = differs.mean(axis=1)
    ambiguity = any_differs.mean(axis=1)
    discrepancy = np.maximum.accumulate(disagreement)
    g = gap[order]
    inside = int(np.searchsorted(g, epsilon, side="right"))  # runs with gap <= epsilon (the reference at least)
    return {
        "reference": ref, "order": order.tolist(), "gap": g.tolist(), "ambiguity": ambiguity.tolist(),
        "discrepancy": discrepancy.tolist(), "disagreement": disagreement.tolist(),
        "at_epsilon": {"epsilon": float(epsilon), "n_runs": inside, "ambiguity": float(ambiguity[inside - 1]),
                       "discrepancy": float(discrepancy[inside - 1])},
    }


def flip_rates(preds, *, n_classes: int | None = None) -> dict[str, Any]:
    """Per-instance flip rates of a model's runs and their distribution.

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Integer labels of n >= 2 runs on m instances.
    n_classes : int, optional
        Number of classes (default: the largest label + 1).

    Returns
    -------
    dict
        ``counts`` (m, C) label counts; ``flip_rate`` (m,) = 1 - max_c n_kc / n; ``disagreement`` (m,) = the
        per-instance pairwise disagreement d_k; ``histogram``: ``deviating`` (j = 0 .. max) and ``instances``
        (how many instances have j runs off their modal label); ``n_unstable`` (instances with j > 0) and
        ``share_unstable``; ``mean_flip_rate``; ``mean_disagreement`` (= PD).

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778), PD; Marx, Calmon &
    Ustun, ICML 2020 (ambiguity is the share of instances with j > 0 when every run counts).
    """
    p = _labels(preds, min_runs=2)
    if p.dtype.kind not in "iu":
        raise ValueError(f"preds must be integer class labels, got dtype {p.dtype}")
    n = p.shape[0]
    counts = label_counts(p, n_classes=n_classes if n_classes is not None else int(p.max()) + 1)
    deviating = n - counts.max(axis=1)
    disagreement = 1.0 - (counts * (counts - 1)).sum(axis=1) / (n * (n - 1))
    hist = np.bincount(deviating, minlength=int(deviating.max()) + 1)
    return {
        "counts": counts, "flip_rate": deviating / n, "disagreement": disagreement,
        "histogram": {"deviating": list(range(len(hist))), "instances": hist.tolist()},
        "n_unstable": int((deviating > 0).sum()), "share_unstable": float((deviating > 0).mean()),
        "mean_flip_rate": float((deviating / n).mean()), "mean_disagreement": float(disagreement.mean()),
    }


def most_flipping(flips: dict, *, top: int = 10) -> list[int]:
    """Indices of the most seed-sensitive instances: highest flip rate, then pairwise disagreement, then index.

    Parameters
    ----------
    flips : dict
        ``flip_rates`` output.
    top : int, default=10
        How many (only instances with at least one deviating run).

    Returns
    -------
    list of int
        Instance indices, most seed-sensitive first.

    References
    ----------
    Marx, Calmon & Ustun, ICML 2020 (ambiguous instances); Du & Nguyen, ACL 2023 (per-instance disagreement).
    """
    rate, dis = np.asarray(flips["flip_rate"]), np.asarray(flips["disagreement"])
    order = np.lexsort((np.arange(len(rate)), -dis, -rate))
    return [int(k) for k in order[:top] if rate[k] > 0]


def churn(preds_a, preds_b) -> float:
    """Expected churn between a random run of model A and a random run of model B.

    Parameters
    ----------
    preds_a, preds_b : array-like of shape (n_a, m) and (n_b, m)
        Integer labels of each model's runs on the same m instances.

    Returns
    -------
    float
        ``1 - (1/m) sum_k sum_c p^A_kc p^B_kc`` with ``p_kc`` each model's share of runs giving label c: the mean
        share of instances on which a run of A and a run of B differ, over all n_a n_b pairs.

    References
    ----------
    Milani Fard, Cormier, Canini & Gupta, "Launch and Iterate: Reducing Prediction Churn", NeurIPS 2016.
    """
    a, b = _labels(preds_a), _labels(preds_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two models' runs cover different instances ({a.shape[1]} vs {b.shape[1]})")
    c = int(max(a.max(), b.max())) + 1
    pa = label_counts(a, n_classes=c) / a.shape[0]
    pb = label_counts(b, n_classes=c) / b.shape[0]
    return float(1.0 - np.mean(np.sum(pa * pb, axis=1)))


def churn_matrix(preds_by_model: dict) -> dict[str, Any]:
    """Churn between every two models' runs, with each model's own PD on the diagonal.

    Parameters
    ----------
    preds_by_model : dict of str to array-like of shape (n, m)
        Model -> its runs' labels, all on the same instances.

    Returns
    -------
    dict
        ``names`` and ``matrix`` (``churn(A, B)`` off the diagonal; the mean disagreement over distinct run
        pairs of the model, PD, on it; None for a model with one run).

    References
    ----------
    Milani Fard et al., NeurIPS 2016 (churn); Du & Nguyen, ACL 2023 (PD).
    """
    names = [str(k) for k in preds_by_model]
    preds = [_labels(v) for v in preds_by_model.values()]
    matrix = []
    for i, a in enumerate(preds):
        row = []
        for j, b in enumerate(preds):
            if i != j:
                row.append(churn(a, b))
            elif a.shape[0] >= 2:
                row.append(float(flip_rates(a)["mean_disagreement"]))
            else:
                row.append(None)
        matrix.append(row)
    return {"names": names, "matrix": matrix}
