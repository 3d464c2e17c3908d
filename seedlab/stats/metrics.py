"""Task metrics shared by training trials and the analyzer.

Every metric has two forms:

* a scalar form ``f(labels, preds) -> float`` (``accuracy``, ``f1``, ``mcc``, ``pearson``, ``spearman``),
  validated like scikit-learn's metric functions;
* a batched form, ``batched(name)``, that computes the metric along the last axis of broadcastable
  arrays ``labels[..., m]`` and ``preds[..., m]`` and returns an array of shape ``[...]``. The bootstrap
  code uses it to score many resamples at once.

The scalar form is the batched form applied to 1-D arrays, so the two can never disagree.

Conventions (the same as scikit-learn / scipy unless stated):

* ``f1`` is binary with positive class 1; labels and predictions must lie in {0, 1}. When there are no
  true and no predicted positives (2TP + FP + FN = 0) it returns 0.0, like scikit-learn's
  ``zero_division`` default.
* ``mcc`` is the multi-class Matthews correlation coefficient (Gorodkin 2004), identical to
  ``sklearn.metrics.matthews_corrcoef``; it returns 0.0 when its denominator is 0.
* ``pearson`` and ``spearman`` return NaN when either input is constant (the correlation is undefined),
  where scipy would warn and also return NaN. ``spearman`` ranks with average ranks for ties, like
  ``scipy.stats.spearmanr``.

Grouped metrics (``GROUPED_METRICS``) score groups of instances, not instances: ``exact_match`` (SuperGLUE
MultiRC's EM) is the share of questions whose every answer option is predicted right. They take the group of each
instance (``groups=``), have no batched form (resampling instances would split groups) and are not in
``ALL_METRIC_NAMES``; ``score`` dispatches to both kinds.

Pure numpy/scipy; no training or tracking imports.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "accuracy",
    "f1",
    "f1_macro",
    "mcc",
    "pearson",
    "spearman",
    "exact_match",
    "batched",
    "score",
    "METRICS",
    "GROUPED_METRICS",
    "ALL_METRIC_NAMES",
    "BATCHED_METRICS",
]


# --------------------------------------------------------------------------------------------------
# batched implementations: metric along the last axis
# --------------------------------------------------------------------------------------------------


def _broadcast(labels, preds) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    preds = np.asarray(preds)
    if labels.ndim == 0 or preds.ndim == 0:
        raise ValueError("labels and preds must have at least one axis (the instance axis is the last)")
    if labels.shape[-1] != preds.shape[-1]:
        raise ValueError(
            f"labels and preds differ in length along the last axis ({labels.shape[-1]} != {preds.shape[-1]})"
        )
    if labels.shape[-1] == 0:
        raise ValueError("labels and preds are empty; a metric needs at least one instance")
    try:
        labels, preds = np.broadcast_arrays(labels, preds)
    except ValueError:
        raise ValueError(
            f"labels {labels.shape} and preds {preds.shape} do not broadcast; leading axes must broadcast"
        ) from None
    return labels, preds


def _batched_accuracy(labels, preds) -> np.ndarray:
    """Fraction of positions with ``labels == preds`` along the last axis."""
    labels, preds = _broadcast(labels, preds)
    return np.mean(labels == preds, axis=-1)


def _check_binary(labels: np.ndarray, preds: np.ndarray, name: str) -> None:
    for what, arr in (("labels", labels), ("preds", preds)):
        bad = (arr != 0) & (arr != 1)
        if np.any(bad):
            raise ValueError(
                f"{name} is binary (positive class 1): {what} must be 0 or 1, found {np.unique(arr[bad])[:5].tolist()}"
            )


def _batched_f1(labels, preds) -> np.ndarray:
    """Binary F1 of the positive class 1: 2TP / (2TP + FP + FN); 0.0 when that denominator is 0."""
    labels, preds = _broadcast(labels, preds)
    _check_binary(labels, preds, "f1")
    y = labels == 1
    p = preds == 1
    tp = np.sum(y & p, axis=-1).astype(np.float64)
    fp = np.sum(~y & p, axis=-1)
    fn = np.sum(y & ~p, axis=-1)
    den = 2.0 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, 2.0 * tp / np.where(den > 0, den, 1.0), 0.0)
    return out


def _mcc_from_counts(correct, total, true_counts, pred_counts) -> np.ndarray:
    """Gorodkin's multi-class MCC from confusion summaries.

    ``correct`` = trace of the confusion matrix, ``total`` = its sum, ``true_counts[..., c]`` and
    ``pred_counts[..., c]`` the row and column sums::

        MCC = (correct * total - t . p) / sqrt((total^2 - p . p) (total^2 - t . t))

    returning 0.0 where the denominator is 0 (as scikit-learn does).
    """
    correct = np.asarray(correct, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    t = np.asarray(true_counts, dtype=np.float64)
    p = np.asarray(pred_counts, dtype=np.float64)
    cov_ytyp = correct * total - np.sum(t * p, axis=-1)
    cov_ypyp = total * total - np.sum(p * p, axis=-1)
    cov_ytyt = total * total - np.sum(t * t, axis=-1)
    den = cov_ytyt * cov_ypyp
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, cov_ytyp / np.sqrt(np.where(den > 0, den, 1.0)), 0.0)
    return out


def _batched_mcc(labels, preds) -> np.ndarray:
    """Multi-class Matthews correlation along the last axis (binary is the 2-class case)."""
    labels, preds = _broadcast(labels, preds)
    classes = np.unique(np.concatenate([np.unique(labels), np.unique(preds)]))
    m = labels.shape[-1]
    correct = np.sum(labels == preds, axis=-1)
    t = np.stack([np.sum(labels == c, axis=-1) for c in classes], axis=-1)
    p = np.stack([np.sum(preds == c, axis=-1) for c in classes], axis=-1)
    return _mcc_from_counts(correct, np.full(correct.shape, m), t, p)


def _corr_last_axis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis, NaN where either side is constant."""
    x = x.astype(np.float64, copy=False)
    y = y.astype(np.float64, copy=False)
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    sxy = np.sum(xc * yc, axis=-1)
    sxx = np.sum(xc * xc, axis=-1)
    syy = np.sum(yc * yc, axis=-1)
    den = np.sqrt(sxx * syy)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, sxy / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def _batched_pearson(labels, preds) -> np.ndarray:
    """Pearson r along the last axis; NaN for constant input (undefined)."""
    labels, preds = _broadcast(labels, preds)
    if labels.shape[-1] < 2:
        raise ValueError("pearson needs at least 2 instances")
    return _corr_last_axis(labels, preds)


def _batched_spearman(labels, preds) -> np.ndarray:
    """Spearman rho: Pearson r of average ranks along the last axis; NaN for constant input."""
    labels, preds = _broadcast(labels, preds)
    if labels.shape[-1] < 2:
        raise ValueError("spearman needs at least 2 instances")
    return _corr_last_axis(rankdata(labels, axis=-1), rankdata(preds, axis=-1))


def _batched_f1_macro(labels, preds) -> np.ndarray:
    """Macro F1: mean over the classes present in labels or preds of 2TP_c / (2TP_c + FP_c + FN_c)."""
    labels, preds = _broadcast(labels, preds)
    n_classes = int(max(labels.max(), preds.max())) + 1
    total = np.zeros(np.broadcast_shapes(labels.shape, preds.shape)[:-1])
    present = np.zeros_like(total)
    for c in range(n_classes):
        is_l, is_p = labels == c, preds == c
        tp = np.sum(is_l & is_p, axis=-1)
        denom = np.sum(is_l, axis=-1) + np.sum(is_p, axis=-1)  # = 2TP + FP + FN
        total = total + np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)
        present = present + (denom > 0)
    return total / present


BATCHED_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": _batched_accuracy,
    "f1": _batched_f1,
    "f1_macro": _batched_f1_macro,
    "mcc": _batched_mcc,
    "pearson": _batched_pearson,
    "spearman": _batched_spearman,
}

ALL_METRIC_NAMES: tuple[str, ...] = tuple(BATCHED_METRICS)


def batched(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The batched form of a metric, for scoring many resamples at once.

    Parameters
    ----------
    name : str
        One of ``ALL_METRIC_NAMES``.

    Returns
    -------
    callable
        ``f(labels[..., m], preds[..., m]) -> array[...]``: the metric along the last axis; leading axes
        broadcast. Applied to 1-D arrays it is the scalar form (module docstring).

    References
    ----------
    Wang, Singh, Michael, Hill, Levy & Bowman, "GLUE: A Multi-Task Benchmark and Analysis Platform for
    Natural Language Understanding", ICLR 2019 (the task metrics); Wang et al., "SuperGLUE", NeurIPS 2019.
    """
    try:
        return BATCHED_METRICS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown metric {name!r} (valid: {', '.join(ALL_METRIC_NAMES)})") from None


# --------------------------------------------------------------------------------------------------
# scalar forms
# --------------------------------------------------------------------------------------------------


def _check_1d(labels, preds) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    preds = np.asarray(preds)
    if labels.ndim != 1 or preds.ndim != 1:
        raise ValueError(f"labels and preds must be 1-D, got shapes {labels.shape} and {preds.shape}")
    if labels.shape[0] != preds.shape[0]:
        raise ValueError(f"labels and preds differ in length ({labels.shape[0]} != {preds.shape[0]})")
    if labels.shape[0] == 0:
        raise ValueError("labels and preds are empty; a metric needs at least one instance")
    return labels, preds


def accuracy(labels, preds) -> float:
    """Accuracy: the share of instances predicted right.

    Parameters
    ----------
    labels : array-like of shape (m,)
        Gold labels (or targets).
    preds : array-like of shape (m,)
        Predictions.

    Returns
    -------
    float
        ``(1/m) sum_k [preds_k == labels_k]``.

    Notes
    -----
    Equal to ``sklearn.metrics.accuracy_score``.

    References
    ----------
    Wang, Singh, Michael, Hill, Levy & Bowman, "GLUE: A Multi-Task Benchmark and Analysis Platform for
    Natural Language Understanding", ICLR 2019 (the task metrics); Wang et al., "SuperGLUE", NeurIPS 2019.
    """
    labels, preds = _check_1d(labels, preds)
    return float(_batched_accuracy(labels, preds))


def f1(labels, preds) -> float:
    """Binary F1 of the positive class 1 (GLUE MRPC/QQP).

    Parameters
    ----------
    labels : array-like of shape (m,)
        Gold labels (or targets).
    preds : array-like of shape (m,)
        Predictions.

    Returns
    -------
    float
        ``2TP / (2TP + FP + FN)``; 0.0 if there are no true and no predicted positives.

    Notes
    -----
    Labels and predictions must lie in {0, 1}. Equal to ``sklearn.metrics.f1_score(labels, preds)``.

    References
    ----------
    Wang, Singh, Michael, Hill, Levy & Bowman, "GLUE: A Multi-Task Benchmark and Analysis Platform for
    Natural Language Understanding", ICLR 2019 (the task metrics); Wang et al., "SuperGLUE", NeurIPS 2019.
    van Rijsbergen, *Information Retrieval*, 2nd ed., Butterworths 1979 (F-measure).
    """
    labels, preds = _check_1d(labels, preds)
    return float(_batched_f1(labels, preds))


def f1_macro(labels, preds) -> float:
    """Macro-averaged F1 over the classes present in labels or preds (SuperGLUE CB).

    Parameters
    ----------
    labels : array-like of shape (m,)
        Gold labels (or targets).
    preds : array-like of shape (m,)
        Predictions.

    Returns
    -------
    float
        ``mean_c 2TP_c / (2TP_c + FP_c + FN_c)`` over the classes that occur.

    Notes
    -----
    Equal to ``sklearn.metrics.f1_score(labels, preds, average="macro")``.

    References
    ----------
    Wang, Singh, Michael, Hill, Levy & Bowman, "GLUE: A Multi-Task Benchmark and Analysis Platform for
    Natural Language Understanding", ICLR 2019 (the task metrics); Wang et al., "SuperGLUE", NeurIPS 2019.
    """
    labels, preds = _check_1d(labels, preds)
    return float(_batched_f1_macro(labels, preds))


def mcc(labels, preds) -> float:
    """Matthews correlation coefficient, multi-class (GLUE CoLA).

    Parameters
    ----------
    labels : array-like of shape (m,)
        Gold labels (or targets).
    preds : array-like of shape (m,)
        Predictions.

    Returns
    -------
    float
        ``(c s - t . p) / sqrt((s^2 - p . p)(s^2 - t . t))`` with c the correct count, s = m, t and p the
        true and predicted class counts; 0.0 when the denominator is 0.

    Notes
    -----
    Equal to ``sklearn.metrics.matthews_corrcoef(labels, preds)``.

    References
    ----------
    Wang, Singh, Michael, Hill, Levy & Bowman, "GLUE: A Multi-Task Benchmark and Analysis Platform for
    Natural Language Understanding", ICLR 2019 (the task metrics); Wang et al., "SuperGLUE", NeurIPS 2019.
    Matthews, Biochimica et Biophysica Acta 405(2), 1975; Gorodkin, "Comparing two K-category assignments by a
    K-category correlation coefficient", Computational Biology and Chemistry 28(5-6), 2004.
    """
    labels, preds = _check_1d(labels, preds)
    return float(_batched_mcc(labels, preds))


def pearson(labels, preds) -> float:
    """Pearson correlation of predictions and targets (GLUE STS-B).

    Parameters
    ----------
    labels : array-like of shape (m,)
        Gold labels (or targets).
    preds : array-like of shape (m,)
        Predictions.

    Returns
    -------
    float
        ``r = cov(y, yhat) / (sd(y) sd(yhat))``; NaN if either is constant (undefined).

    Notes
    -----
    Equal to ``scipy.stats.pearsonr(labels, preds)[0]`` where defined.

    References
    ----------
    Wang, Singh, Michael, Hill, Levy & Bowman, "GLUE: A Multi-Task Benchmark and Analysis Platform for
    Natural Language Understanding", ICLR 2019 (the task metrics); Wang et al., "SuperGLUE", NeurIPS 2019.
    """
    labels, preds = _check_1d(labels, preds)
    return float(_batched_pearson(labels, preds))


def spearman(labels, preds) -> float:
    """Spearman rank correlation of predictions and targets (GLUE STS-B).

    Parameters
    ----------
    labels : array-like of shape (m,)
        Gold labels (or targets).
    preds : array-like of shape (m,)
        Predictions.

    Returns
    -------
    float
        Pearson r of the average ranks (ties share the mean rank); NaN if either is constant.

    Notes
    -----
    Equal to ``scipy.stats.spearmanr(labels, preds)[0]`` where defined.

    References
    ----------
    Wang, Singh, Michael, Hill, Levy & Bowman, "GLUE: A Multi-Task Benchmark and Analysis Platform for
    Natural Language Understanding", ICLR 2019 (the task metrics); Wang et al., "SuperGLUE", NeurIPS 2019.
    Spearman, "The proof and measurement of association between two things", Am. J. Psychology 15(1), 1904.
    """
    labels, preds = _check_1d(labels, preds)
    return float(_batched_spearman(labels, preds))


def exact_match(labels, preds, groups) -> float:
    """Exact match over groups: the share of groups (MultiRC: questions) whose every instance is predicted right.

    Parameters
    ----------
    labels : array-like of shape (m,)
        Gold labels (MultiRC: 1 = a true answer option).
    preds : array-like of shape (m,)
        Predictions.
    groups : array-like of shape (m,)
        The group of each instance (any hashable numpy dtype); the instances of a group need not be adjacent.

    Returns
    -------
    float
        ``(1/G) sum_g prod_{k in g} [preds_k == labels_k]`` over the G distinct groups.

    Notes
    -----
    SuperGLUE's MultiRC EM (``EM_0`` of Khashabi et al.); F1 over all answer options (``F1a``) is ``f1``.

    References
    ----------
    Khashabi, Chaturvedi, Roth, Upadhyay & Roth, "Looking Beyond the Surface: A Challenge Set for Reading
    Comprehension over Multiple Sentences", NAACL 2018; Wang et al., "SuperGLUE", NeurIPS 2019.
    """
    labels, preds = _check_1d(labels, preds)
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise ValueError(f"groups must have one entry per instance, shape {labels.shape}, got {groups.shape}")
    _, codes = np.unique(groups, return_inverse=True)
    wrong = np.bincount(codes.ravel(), weights=(labels != preds).astype(np.float64))
    return float(np.mean(wrong == 0))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "f1_macro": f1_macro,
    "mcc": mcc,
    "pearson": pearson,
    "spearman": spearman,
}

GROUPED_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {"exact_match": exact_match}


def score(name: str, labels, preds, *, groups=None) -> float:
    """A task metric by name: the dispatcher that trials, importer and analysis share.

    Parameters
    ----------
    name : str
        One of ``ALL_METRIC_NAMES`` or ``GROUPED_METRICS`` (the metric selects the function, so it comes first,
        like ``batched``).
    labels, preds : array-like of shape (m,)
        Gold labels and predictions.
    groups : array-like of shape (m,), optional
        The group of each instance; required by the grouped metrics, unused by the others.

    Returns
    -------
    float
        ``METRICS[name](labels, preds)`` or ``GROUPED_METRICS[name](labels, preds, groups)``; formulas in each
        metric's docstring.

    References
    ----------
    Wang, Singh, Michael, Hill, Levy & Bowman, "GLUE: A Multi-Task Benchmark and Analysis Platform for
    Natural Language Understanding", ICLR 2019 (the task metrics); Wang et al., "SuperGLUE", NeurIPS 2019.
    """
    if isinstance(name, str) and name in GROUPED_METRICS:
        if groups is None:
            raise ValueError(f"metric {name!r} scores groups of instances: pass groups= (the group of each instance)")
        return GROUPED_METRICS[name](labels, preds, groups)
    try:
        fn = METRICS[name]
    except (KeyError, TypeError):
        valid = ", ".join((*ALL_METRIC_NAMES, *GROUPED_METRICS))
        raise ValueError(f"unknown metric {name!r} (valid: {valid})") from None
    return fn(labels, preds)
