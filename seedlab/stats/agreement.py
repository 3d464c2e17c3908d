"""Prediction-level (in)stability across runs: macro spread, consistency, agreement, PD, JSD, Fleiss' kappa.

Inputs are the predictions of ``n`` runs on the same ``m`` instances, ``preds`` of shape (n, m) (class
labels of any hashable numpy dtype), and optionally class probabilities ``probs`` of shape (n, m, C).

Papers:
    * Bui/Zhou, Savova & Wang, IJCNLP-AACL 2025 (arXiv 2503.07329): macro (mean, SD of the task metric
      over seeds) and micro (consistency of individual predictions) effects of seeds; consistency between
      two runs of different seeds, "correct consistency" (both runs right) and, for regression tasks, the
      Pearson correlation of two runs' predictions (``pairwise_consistency``).
    * Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778): SD, PD, JSD,
      1 - Fleiss' kappa and their validity checks (sub-sampling insensitivity; agreement of measures).

All pair-based measures use unordered pairs i < j. Pure numpy/scipy.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy.special import xlogy
from scipy.stats import kendalltau, pearsonr, spearmanr

__all__ = [
    "agreement_matrix",
    "summarize_metric",
    "label_counts",
    "consistency_all",
    "agreement_pairwise",
    "pairwise_disagreement",
    "correct_consistency",
    "pairwise_pearson",
    "pairwise_consistency",
    "pairwise_jsd_per_instance",
    "mean_pairwise_jsd",
    "fleiss_kappa",
    "instability_measures",
    "subsample_insensitivity",
    "measure_agreement",
    "ranking_agreement",
]


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------


def _check_preds(preds, min_runs: int = 2) -> np.ndarray:
    preds = np.asarray(preds)
    if preds.ndim != 2:
        raise ValueError(f"preds must be 2-D (runs, instances), got shape {preds.shape}")
    n, m = preds.shape
    if n < min_runs:
        raise ValueError(f"preds has {n} run(s); this measure needs at least {min_runs} runs")
    if m == 0:
        raise ValueError("preds has no instances; need at least one")
    return preds


def _check_probs(probs, min_runs: int = 2, atol: float = 1e-3) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3:
        raise ValueError(f"probs must be 3-D (runs, instances, classes), got shape {probs.shape}")
    n, m, c = probs.shape
    if n < min_runs:
        raise ValueError(f"probs has {n} run(s); this measure needs at least {min_runs} runs")
    if m == 0 or c < 2:
        raise ValueError(f"probs needs at least one instance and two classes, got shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError("probs must be finite and non-negative")
    sums = probs.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > atol):
        worst = float(np.max(np.abs(sums - 1.0)))
        raise ValueError(f"probs must sum to 1 over classes (within {atol}); worst deviation {worst:.3g}")
    return probs


# --------------------------------------------------------------------------------------------------
# macro level
# --------------------------------------------------------------------------------------------------


def summarize_metric(values, *, ddof: int = 0) -> dict:
    """Mean and spread of a task metric over runs (the macro level of seed effects).

    Parameters
    ----------
    values : array-like of shape (n,)
        One finite metric value per run.
    ddof : {0, 1}, default=0
        Delta degrees of freedom of the SD; 0 (population SD) is Du & Nguyen's choice.

    Returns
    -------
    dict
        ``n``, ``mean``, ``sd``, ``ddof`` (recorded beside the SD), ``min``, ``max``.

    Notes
    -----
    ``sd = sqrt(sum_i (v_i - mean)^2 / (n - ddof))``.

    References
    ----------
    Bui/Zhou, Savova & Wang, IJCNLP-AACL 2025 (arXiv 2503.07329): macro effects of seeds;
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778): SD.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] == 0:
        raise ValueError(f"values must be a non-empty 1-D array of per-run metric values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    if ddof not in (0, 1) or ddof >= v.shape[0]:
        raise ValueError(f"ddof must be 0 or 1 and smaller than the number of values ({v.shape[0]}), got {ddof}")
    return {
        "n": int(v.shape[0]),
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=ddof)),
        "ddof": int(ddof),
        "min": float(v.min()),
        "max": float(v.max()),
    }


# --------------------------------------------------------------------------------------------------
# micro level: label agreement
# --------------------------------------------------------------------------------------------------


def label_counts(preds, *, n_classes: int | None = None) -> np.ndarray:
    """Count table of the labels the runs give each instance (runs as raters).

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels of n runs on m instances (any hashable numpy dtype).
    n_classes : int, optional
        With it, labels must be integers in [0, n_classes) and column c is label c; without it, the
        columns are the sorted distinct labels that occur.

    Returns
    -------
    ndarray of int, shape (m, C)
        ``n_kc``: how many runs give instance k label c. O(n m).

    References
    ----------
    Fleiss, "Measuring nominal scale agreement among many raters", Psychological Bulletin 76(5), 1971
    (the subjects x categories table).
    """
    preds = _check_preds(preds, min_runs=1)
    n, m = preds.shape
    if n_classes is not None:
        if preds.dtype.kind not in "iu":
            raise ValueError(f"with n_classes, preds must be integer labels, got dtype {preds.dtype}")
        if preds.min() < 0 or preds.max() >= n_classes:
            raise ValueError(
                f"with n_classes={n_classes}, labels must lie in [0, {n_classes}), "
                f"found range [{preds.min()}, {preds.max()}]"
            )
        codes = preds.astype(np.int64)
        c = int(n_classes)
    else:
        _, inv = np.unique(preds, return_inverse=True)
        codes = inv.reshape(n, m)
        c = int(codes.max()) + 1
    flat = (np.arange(m)[None, :] * c + codes).ravel()
    return np.bincount(flat, minlength=m * c).reshape(m, c)


def agreement_matrix(preds) -> np.ndarray:
    """Run x run agreement: the share of instances on which two runs predict the same label.

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels of n >= 2 runs on m instances.

    Returns
    -------
    ndarray of shape (n, n)
        ``A[i, j] = (1/m) sum_k [yhat_ik = yhat_jk]``; ones on the diagonal.

    Notes
    -----
    One BLAS product per class (``X_c[i, k] = [yhat_ik = c]``, ``A = sum_c X_c X_c^T / m``); memory O(n m).
    The off-diagonal mean equals ``agreement_pairwise`` = 1 - PD.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778): PD, which is
    1 - the mean of this matrix off the diagonal.
    """
    preds = _check_preds(preds)
    n, m = preds.shape
    _, codes = np.unique(preds, return_inverse=True)
    codes = codes.reshape(n, m)
    out = np.zeros((n, n))
    for c in range(int(codes.max()) + 1):
        x = (codes == c).astype(np.float64)
        out += x @ x.T
    return out / m


def consistency_all(preds) -> float:
    """Share of instances on which all n runs predict the same label ("consistency", reading 1).

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels of n >= 2 runs on m instances.

    Returns
    -------
    float
        ``(1/m) sum_k [yhat_1k = ... = yhat_nk]``.

    Notes
    -----
    It falls as n grows, so always report n beside it (``instability_measures`` does). The paper's exact
    formula is unconfirmed (METHODS.md section 1); ``agreement_pairwise`` is the other reading.

    References
    ----------
    Bui/Zhou, Savova & Wang, IJCNLP-AACL 2025 (arXiv 2503.07329): micro effects, consistency of predictions.
    """
    preds = _check_preds(preds)
    return float(np.mean(np.all(preds == preds[0:1], axis=0)))


def agreement_pairwise(preds) -> float:
    """Mean over unordered run pairs of the share of instances with equal labels ("consistency", reading 2).

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels of n >= 2 runs on m instances.

    Returns
    -------
    float
        ``(2 / (n (n-1))) sum_{i<j} (1/m) sum_k [yhat_ik = yhat_jk]`` = 1 - PD.

    Notes
    -----
    Computed from label counts in O(n m): for instance k the share of agreeing pairs is
    ``sum_c n_kc (n_kc - 1) / (n (n - 1))``; the result is its mean over instances.

    References
    ----------
    Bui/Zhou, Savova & Wang, IJCNLP-AACL 2025 (arXiv 2503.07329);
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778) (PD).
    """
    preds = _check_preds(preds)
    n = preds.shape[0]
    counts = label_counts(preds).astype(np.float64)
    per_instance = np.sum(counts * (counts - 1.0), axis=1) / (n * (n - 1.0))
    return float(per_instance.mean())


def pairwise_disagreement(preds) -> float:
    """PD: mean over unordered run pairs of the share of instances on which they disagree.

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels of n >= 2 runs on m instances.

    Returns
    -------
    float
        ``PD = (2 / (n (n-1))) sum_{i<j} (1/m) sum_k [yhat_ik != yhat_jk]`` = 1 - ``agreement_pairwise``.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778).
    """
    return 1.0 - agreement_pairwise(preds)


# --------------------------------------------------------------------------------------------------
# micro level: the paper's pairwise readings (consistency, correct consistency, Pearson for regression)
# --------------------------------------------------------------------------------------------------


def _check_labels(labels, m: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (m,):
        raise ValueError(f"labels must have one gold label per instance, shape ({m},), got {labels.shape}")
    return labels


def correct_consistency(preds, labels) -> float:
    """Mean over unordered run pairs of the share of instances that both runs predict right ("correct consistency").

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels of n >= 2 runs on m instances.
    labels : array-like of shape (m,)
        Gold labels.

    Returns
    -------
    float
        ``(2 / (n (n-1))) sum_{i<j} (1/m) sum_k [yhat_ik = y_k] [yhat_jk = y_k]``.

    Notes
    -----
    Computed from the number of runs right on each instance, ``c_k = sum_i [yhat_ik = y_k]``, in O(n m): the share
    of pairs both right on instance k is ``c_k (c_k - 1) / (n (n - 1))``, and the result is its mean over instances.
    It is at most the pairwise consistency (``agreement_pairwise``; two right predictions are equal), and their
    difference is the share of agreeing pairs that agree on a wrong label.

    References
    ----------
    Bui/Zhou, Savova & Wang, IJCNLP-AACL 2025 (arXiv 2503.07329): correct consistency.
    """
    preds = _check_preds(preds)
    n, m = preds.shape
    right = np.sum(preds == _check_labels(labels, m)[None, :], axis=0).astype(np.float64)
    return float(np.mean(right * (right - 1.0)) / (n * (n - 1.0)))


def _pearson_matrix(values: np.ndarray) -> np.ndarray:
    """Run x run Pearson correlation of predicted values; NaN where a run's predictions are constant."""
    centred = values - values.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.sum(centred * centred, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (centred @ centred.T) / np.outer(norms, norms)
    r[(norms == 0)[:, None] | (norms == 0)[None, :]] = np.nan
    return np.clip(r, -1.0, 1.0)


def pairwise_pearson(values) -> float:
    """Regression: mean over unordered run pairs of the Pearson correlation of the two runs' predicted values.

    Parameters
    ----------
    values : array-like of shape (n, m)
        Predicted values of n >= 2 runs on m >= 2 instances.

    Returns
    -------
    float
        ``(2 / (n (n-1))) sum_{i<j} r(yhat_i, yhat_j)``, ``r`` the Pearson correlation over instances; the pairs with
        a constant run (r undefined) are left out, and NaN is returned when every pair has one.

    References
    ----------
    Bui/Zhou, Savova & Wang, IJCNLP-AACL 2025 (arXiv 2503.07329): consistency of a regression task (STS-B) as the
    Pearson correlation between runs.
    """
    pairs = _pair_values(_check_values(values), "pearson")
    defined = pairs[np.isfinite(pairs)]
    return float(defined.mean()) if defined.size else float("nan")


def _check_values(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(f"values must be 2-D (runs, instances) with at least 2 runs and 2 instances, "
                         f"got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite")
    return values


def _pair_values(preds: np.ndarray, reading: str, labels=None) -> np.ndarray:
    """One value per unordered run pair (i < j, row-major order) of a pairwise reading."""
    n, m = preds.shape
    if reading == "consistency":
        matrix = agreement_matrix(preds)
    elif reading == "correct_consistency":
        right = (preds == labels[None, :]).astype(np.float64)
        matrix = right @ right.T / m
    else:
        matrix = _pearson_matrix(preds)
    return matrix[np.triu_indices(n, k=1)]


def pairwise_consistency(preds, labels=None, *, regression: bool = False) -> dict:
    """The paper's micro-level readings, one value per pair of runs of different seeds, and their spread over pairs.

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels (classification) or predicted values (regression) of n >= 2 runs on m instances.
    labels : array-like of shape (m,), optional
        Gold labels; with them (classification) correct consistency is computed too.
    regression : bool, default=False
        Predicted values of a regression task: the Pearson reading instead of label agreement.

    Returns
    -------
    dict
        ``n_runs``, ``n_pairs`` and, per reading, ``summarize_metric`` of its pair values (``n``, ``mean``, ``sd``
        with ``ddof`` 0, ``min``, ``max``): classification ``consistency`` and ``correct_consistency`` (None without
        ``labels``); regression ``pearson`` (None when no pair is defined) and ``n_undefined`` (pairs with a
        constant run).

    Notes
    -----
    For runs i and j of different seeds, over the m instances::

        consistency(i, j)         = (1/m) sum_k [yhat_ik = yhat_jk]
        correct_consistency(i, j) = (1/m) sum_k [yhat_ik = y_k] [yhat_jk = y_k]
        pearson(i, j)             = r(yhat_i, yhat_j)                       (regression)

    each over all n (n-1) / 2 unordered pairs. The mean of ``consistency`` is ``agreement_pairwise`` (1 - PD), that of
    ``correct_consistency`` is ``correct_consistency``, that of ``pearson`` is ``pairwise_pearson``. The paper's own
    formula is unconfirmed (METHODS.md section 1): this is the pairwise reading; ``consistency_all`` is the other.

    References
    ----------
    Bui/Zhou, Savova & Wang, IJCNLP-AACL 2025 (arXiv 2503.07329): consistency, correct consistency, Pearson
    consistency of a regression task.
    """
    if regression:
        values = _check_values(preds)
        pairs = _pair_values(values, "pearson")
        defined = pairs[np.isfinite(pairs)]
        return {"n_runs": int(values.shape[0]), "n_pairs": int(pairs.size),
                "pearson": summarize_metric(defined, ddof=0) if defined.size else None,
                "n_undefined": int(pairs.size - defined.size)}
    preds = _check_preds(preds)
    n, m = preds.shape
    out = {"n_runs": int(n), "n_pairs": int(n * (n - 1) // 2),
           "consistency": summarize_metric(_pair_values(preds, "consistency"), ddof=0), "correct_consistency": None}
    if labels is not None:
        pairs = _pair_values(preds, "correct_consistency", _check_labels(labels, m))
        out["correct_consistency"] = summarize_metric(pairs, ddof=0)
    return out


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (natural log) over the last axis, with 0 log 0 = 0."""
    return -np.sum(xlogy(p, p), axis=-1)


def pairwise_jsd_per_instance(probs) -> np.ndarray:
    """Per instance, the mean over run pairs of the Jensen-Shannon divergence of their class probabilities.

    Parameters
    ----------
    probs : array-like of shape (n, m, C)
        Class probabilities of n >= 2 runs on m instances (rows sum to 1).

    Returns
    -------
    ndarray of shape (m,)
        ``(2 / (n (n-1))) sum_{i<j} JSD(p_ik, p_jk)``, natural log.

    Notes
    -----
    ``JSD(p, q) = H(M) - (H(p) + H(q))/2`` with ``M = (p+q)/2``; 0 log 0 = 0. The single-run entropies are
    computed once; only H(M) needs the pairs, one run against all later runs at a time (memory O(n m C)).
    The measure is a mean over instances, so a subset's JSD is the mean of this vector over the subset.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778): JSD;
    Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Information Theory 37(1), 1991.
    """
    probs = _check_probs(probs)
    n, m, _ = probs.shape
    h = _entropy(probs)  # (n, m)
    total_hm = np.zeros(m)
    for i in range(n - 1):
        mix = 0.5 * (probs[i][None, :, :] + probs[i + 1 :])
        total_hm += _entropy(mix).sum(axis=0)
    n_pairs = n * (n - 1) / 2.0
    total_h = 0.5 * (n - 1) * h.sum(axis=0)  # each run appears in n-1 pairs
    return np.maximum((total_hm - total_h) / n_pairs, 0.0)


def mean_pairwise_jsd(probs) -> float:
    """JSD: the mean over run pairs and instances of the Jensen-Shannon divergence of class probabilities.

    Parameters
    ----------
    probs : array-like of shape (n, m, C)
        Class probabilities of n >= 2 runs on m instances.

    Returns
    -------
    float
        ``(1/m) sum_k (2 / (n (n-1))) sum_{i<j} JSD(p_ik, p_jk)``, natural log, bounded by log 2.

    Notes
    -----
    The mean of ``pairwise_jsd_per_instance``.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778).
    """
    return float(pairwise_jsd_per_instance(probs).mean())


def fleiss_kappa(preds, *, n_classes: int | None = None) -> float:
    """Fleiss' kappa with runs as raters, any number of classes (Du & Nguyen use 1 - kappa).

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels of n >= 2 runs on m instances.
    n_classes : int, optional
        Validates that the labels are integers in [0, n_classes); unused classes change nothing.

    Returns
    -------
    float
        kappa; 1.0 when every run predicts one and the same label on every instance (see Notes).

    Notes
    -----
    With ``n_kc`` the number of runs giving instance k label c (n runs, m instances)::

        P_k   = (sum_c n_kc^2 - n) / (n (n - 1))
        Pbar  = mean_k P_k
        p_c   = sum_k n_kc / (n m)
        P_e   = sum_c p_c^2
        kappa = (Pbar - P_e) / (1 - P_e)

    Equal to ``statsmodels.stats.inter_rater.fleiss_kappa(table, method="fleiss")`` on the count table.
    Degenerate case: ``P_e == 1`` happens exactly when every run predicts one and the same label on every
    instance. Then ``Pbar == 1`` too and kappa is 0/0; statsmodels returns NaN. We return **1.0** (complete
    agreement, zero instability), because every pair of runs agrees on every instance and the instability
    measure ``1 - kappa`` should then be 0, not undefined.

    References
    ----------
    Fleiss, "Measuring nominal scale agreement among many raters", Psychological Bulletin 76(5), 1971;
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778).
    """
    preds = _check_preds(preds)
    n, m = preds.shape
    counts = label_counts(preds, n_classes=n_classes).astype(np.float64)
    p_k = (np.sum(counts * counts, axis=1) - n) / (n * (n - 1.0))
    p_bar = float(p_k.mean())
    p_c = counts.sum(axis=0) / (n * m)
    if np.count_nonzero(p_c) <= 1:
        return 1.0
    p_e = float(np.sum(p_c * p_c))
    return float((p_bar - p_e) / (1.0 - p_e))


# --------------------------------------------------------------------------------------------------
# all measures at once
# --------------------------------------------------------------------------------------------------


def instability_measures(preds, probs=None, metric_values=None, *, ddof: int = 0) -> dict:
    """The prediction-level instability measures of one set of runs.

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels of n >= 2 runs on m instances.
    probs : array-like of shape (n, m, C), optional
        Class probabilities (for the JSD).
    metric_values : array-like of shape (n,), optional
        One task-metric value per run (for the SD).
    ddof : {0, 1}, default=0
        Of the SD (0: population SD, as Du & Nguyen's code).

    Returns
    -------
    dict
        ``sd`` (SD of ``metric_values``; None without them), ``pd`` (``pairwise_disagreement``), ``jsd``
        (``mean_pairwise_jsd``; None without ``probs``), ``one_minus_fleiss_kappa`` (1 - ``fleiss_kappa``),
        ``consistency_all`` and ``agreement_pairwise`` (the two readings of "consistency"), ``n_runs``,
        ``ddof``.

    Notes
    -----
    Formulas: the functions named above. The pair-based measures use unordered pairs i < j.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778): SD, PD, JSD,
    1 - Fleiss' kappa;
    Bui/Zhou, Savova & Wang, IJCNLP-AACL 2025 (arXiv 2503.07329): consistency.
    """
    preds = _check_preds(preds)
    n, m = preds.shape
    sd = None
    if metric_values is not None:
        mv = np.asarray(metric_values, dtype=np.float64)
        if mv.shape != (n,):
            raise ValueError(f"metric_values must have one value per run, shape ({n},), got {mv.shape}")
        sd = summarize_metric(mv, ddof=ddof)["sd"]
    jsd = None
    if probs is not None:
        pr = np.asarray(probs)
        if pr.ndim != 3 or pr.shape[:2] != (n, m):
            raise ValueError(f"probs must have shape ({n}, {m}, C) to match preds, got {pr.shape}")
        jsd = mean_pairwise_jsd(pr)
    agree = agreement_pairwise(preds)
    return {
        "sd": sd,
        "pd": 1.0 - agree,
        "jsd": jsd,
        "one_minus_fleiss_kappa": 1.0 - fleiss_kappa(preds),
        "consistency_all": consistency_all(preds),
        "agreement_pairwise": agree,
        "n_runs": int(n),
        "ddof": int(ddof),
    }


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def subsample_insensitivity(
    preds,
    probs=None,
    labels=None,
    *,
    fractions: Sequence[float] = (0.1, 0.5),
    n_subsamples: int = 10,
    rng: int | np.random.Generator | None = None,
    metric: str = "accuracy",
) -> dict:
    """Du & Nguyen's validity check (a): is a measure insensitive to sub-sampling the test set?

    Parameters
    ----------
    preds : array-like of shape (n, m)
        Labels of n >= 2 runs on m instances.
    probs : array-like of shape (n, m, C), optional
        Class probabilities (adds the JSD).
    labels : array-like of shape (m,), optional
        Gold labels (adds the SD of the task metric ``metric``, population SD).
    fractions : sequence of float in (0, 1], default=(0.1, 0.5)
        Subset sizes as shares of m.
    n_subsamples : int, default=10
        Random subsets per fraction. (Subsets are drawn without replacement: this is not a bootstrap.)
    rng : int, numpy.random.Generator or None, default=None
        Seed of ``np.random.default_rng``, or a Generator.
    metric : str, default="accuracy"
        Task metric of the SD (``seedlab.stats.metrics``).

    Returns
    -------
    dict
        ``{"full": {measure: value}, "fractions": {f: {measure: {"mean", "sd", "values"}}}, "n_runs",
        "n_instances", "draws"}`` (``draws`` = n_subsamples, the analysis result schema's key). Measures:
        ``pd``, ``one_minus_fleiss_kappa``, ``consistency_all``, ``agreement_pairwise``, ``jsd`` (with
        ``probs``), ``sd`` (with ``labels``).

    Notes
    -----
    For each fraction f, draw ``n_subsamples`` subsets of size ``max(2, round(f m))`` without replacement
    (``gen.choice(m, size, replace=False)``, sorted) and recompute each measure on the subset. A valid
    measure keeps the subset mean close to the full-set value with a small SD.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778): validity check
    (a), insensitivity to sub-sampling the test set.
    """
    preds = _check_preds(preds)
    n, m = preds.shape
    if int(n_subsamples) != n_subsamples or n_subsamples < 1:
        raise ValueError(f"n_subsamples must be an integer >= 1, got {n_subsamples}")
    fr = [float(f) for f in fractions]
    if not fr or any(not (0.0 < f <= 1.0) for f in fr):
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    if probs is not None:
        probs = np.asarray(probs)
        if probs.ndim != 3 or probs.shape[:2] != (n, m):
            raise ValueError(f"probs must have shape ({n}, {m}, C) to match preds, got {probs.shape}")
    if labels is not None:
        from seedlab.stats import metrics as _metrics

        labels = np.asarray(labels)
        if labels.shape != (m,):
            raise ValueError(f"labels must have shape ({m},) to match preds, got {labels.shape}")
        metric_fn = _metrics.batched(metric)

    # JSD is a mean over instances: compute its per-instance terms once and average them per subset.
    jsd_k = pairwise_jsd_per_instance(probs) if probs is not None else None

    def measures(idx) -> dict:
        p = preds[:, idx]
        out = {
            "pd": pairwise_disagreement(p),
            "one_minus_fleiss_kappa": 1.0 - fleiss_kappa(p),
            "consistency_all": consistency_all(p),
            "agreement_pairwise": agreement_pairwise(p),
        }
        if jsd_k is not None:
            out["jsd"] = float(jsd_k[idx].mean())
        if labels is not None:
            out["sd"] = float(np.std(metric_fn(labels[idx][None, :], p), ddof=0))
        return out

    gen = _as_rng(rng)
    full = measures(np.arange(m))
    res: dict = {}
    for f in fr:
        size = max(2, int(round(f * m)))
        size = min(size, m)
        vals: dict[str, list[float]] = {k: [] for k in full}
        for _ in range(n_subsamples):
            idx = np.sort(gen.choice(m, size=size, replace=False))
            for k, v in measures(idx).items():
                vals[k].append(v)
        res[f] = {
            k: {"mean": float(np.mean(v)), "sd": float(np.std(v)), "values": [float(x) for x in v]}
            for k, v in vals.items()
        }
    return {"full": full, "fractions": res, "n_runs": int(n), "n_instances": int(m), "draws": int(n_subsamples)}


def measure_agreement(curves: Mapping[str, Sequence[float]]) -> dict:
    """Du & Nguyen's validity check (b): agreement among measures as correlation of their layer-wise curves.

    Parameters
    ----------
    curves : mapping of str to sequence of float
        Each measure's finite values over layers, all the same length L >= 3.

    Returns
    -------
    dict
        ``{"names": [...], "pearson": (k, k) array, "spearman": (k, k) array, "pairs": [dict(a, b, pearson,
        spearman, n)]}`` with ones on the diagonals; a constant curve gives NaN.

    Notes
    -----
    For every unordered pair of measures, the Pearson and Spearman correlation of the two curves
    (``scipy.stats.pearsonr`` / ``spearmanr``).

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778): validity check
    (b), agreement between measures.
    """
    if not isinstance(curves, Mapping) or len(curves) < 2:
        raise ValueError("curves must map at least two measure names to their layer-wise values")
    names = list(curves)
    arrs = [np.asarray(curves[k], dtype=np.float64) for k in names]
    L = arrs[0].shape
    for k, a in zip(names, arrs):
        if a.ndim != 1 or a.shape != L:
            raise ValueError(f"curve {k!r} has shape {a.shape}; all curves must be 1-D of the same length {L}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"curve {k!r} has non-finite values")
    if L[0] < 3:
        raise ValueError(f"curves need at least 3 layers to correlate, got {L[0]}")
    k = len(names)
    pear = np.eye(k)
    spear = np.eye(k)
    pairs = []
    for i in range(k):
        for j in range(i + 1, k):
            a, b = arrs[i], arrs[j]
            if np.ptp(a) == 0 or np.ptp(b) == 0:
                r = rho = float("nan")
            else:
                r = float(pearsonr(a, b)[0])
                rho = float(spearmanr(a, b)[0])
            pear[i, j] = pear[j, i] = r
            spear[i, j] = spear[j, i] = rho
            pairs.append({"a": names[i], "b": names[j], "pearson": r, "spearman": rho, "n": int(L[0])})
    return {"names": names, "pearson": pear, "spearman": spear, "pairs": pairs}


def ranking_agreement(scores: Mapping[str, Mapping[str, float]]) -> dict:
    """Agreement of the rankings of conditions (e.g. mitigation methods) under different measures.

    Parameters
    ----------
    scores : mapping of str to mapping of str to float
        ``scores[measure][condition]``: the value of an instability measure for a condition; every measure
        must score the same (>= 2) conditions.

    Returns
    -------
    dict
        ``{"conditions": [...], "measures": [...], "tau": (k, k) array, "pvalue": (k, k) array}``.

    Notes
    -----
    For each pair of measures, Kendall's tau-b (``scipy.stats.kendalltau``) between their score vectors
    over the sorted conditions.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778): rankings of
    mitigation methods under each measure; Kendall, "A new measure of rank correlation", Biometrika 30, 1938.
    """
    if not isinstance(scores, Mapping) or len(scores) < 2:
        raise ValueError("scores must map at least two measure names to {condition: value}")
    measures = list(scores)
    conds = sorted(scores[measures[0]])
    if len(conds) < 2:
        raise ValueError("need at least two conditions to rank")
    for mname in measures:
        if sorted(scores[mname]) != conds:
            raise ValueError(f"measure {mname!r} scores conditions {sorted(scores[mname])}, expected {conds}")
    vecs = [np.array([scores[mname][c] for c in conds], dtype=np.float64) for mname in measures]
    k = len(measures)
    tau = np.eye(k)
    pv = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            res = kendalltau(vecs[i], vecs[j])
            tau[i, j] = tau[j, i] = float(res.statistic)
            pv[i, j] = pv[j, i] = float(res.pvalue)
    return {"conditions": conds, "measures": measures, "tau": tau, "pvalue": pv}
