"""Expected maximum validation performance as a function of the number of trials ("Show Your Work").

Dodge, Gururangan, Card, Schwartz & Smith, "Show Your Work: Improved Reporting of Experimental Results",
EMNLP 2019 (arXiv 1909.03004). Given N observed validation scores ``v_1..v_N`` (one per hyperparameter trial
or seed), report how good the best of ``n`` trials is expected to be, for n = 1, 2, ...: a curve that shows
what a budget of n trials buys, instead of one max over an unreported number of trials.

Estimators (``method``, one of ``ESTIMATORS``), with ``v_(1) <= ... <= v_(N)`` the sorted scores:

* ``"with_replacement"`` (Dodge et al. 2019, the default): the n trials are n i.i.d. draws from the
  *empirical* distribution of the N scores (sampling with replacement), so ``P(max_n <= v_(i)) = (i/N)^n``
  and::

      E[max_n]   = sum_i v_(i)   [ (i/N)^n - ((i-1)/N)^n ]
      E[max_n^2] = sum_i v_(i)^2 [ (i/N)^n - ((i-1)/N)^n ]
      Var[max_n] = E[max_n^2] - E[max_n]^2

  Ties need no special handling: the weights of tied values add up to the probability of that value. Any
  n >= 1 is defined; for n > N the curve *extrapolates* from the empirical distribution, which cannot
  exceed the observed max v_(N), so it underestimates the population's expected max there (and, because
  the empirical distribution is used as if it were the population, is biased low for n close to N too).
  Points with n > N are flagged ``extrapolated``.

* ``"unbiased"`` (the U-statistic; Dodge et al. 2021, "Expected Validation Performance and Estimation of a
  Random Variable's Maximum", arXiv 2110.00613, whose reading of it we follow): the expected max of n
  trials drawn *without* replacement from the N observed ones::

      E[max_n] = sum_i v_(i) C(i-1, n-1) / C(N, n)          (n <= N only)

  It is exactly unbiased for the population's E[max of n i.i.d. trials] (every n-subset of i.i.d.
  scores is an i.i.d. sample of size n), at the price of more variance; it is defined for n <= N only.
  ``variance`` is the same plug-in E[max^2] - E[max]^2 from these weights (E[max^2] unbiased, the
  difference not).

For both, n = 1 gives the mean of the scores and n = N (unbiased) or n -> infinity (with replacement)
gives the max. The curves are non-decreasing in n.

Uncertainty: ``bootstrap percentile intervals over the N scores``: resample the N scores with replacement
``n_bootstrap`` times, recompute the whole curve on each resample, and take the alpha/2 and 1 - alpha/2
percentiles per n. RNG: ``gen = np.random.default_rng(rng); idx = gen.integers(0, N, (n_bootstrap, N))``,
nothing else. The bootstrap inherits the estimator's bias near n = N (a resample holds ~63% distinct
scores), so intervals there are wide and low; read them as the scale of the uncertainty, not as exact
coverage.

Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import gammaln

__all__ = ["ExpectedMaxCurve", "expected_max_weights", "expected_max", "expected_max_curve", "ESTIMATORS"]

#: the estimator variants, the values of ``method`` (not mitigation methods: see seedlab.train.mitigation)
ESTIMATORS = ("with_replacement", "unbiased")

_ESTIMATOR = {
    "with_replacement": "expected max of n trials, sampling the N scores with replacement (Dodge et al. 2019)",
    "unbiased": "expected max of n trials, sampling the N scores without replacement; unbiased U-statistic "
    "(Dodge et al. 2021)",
}


def _check_scores(scores) -> np.ndarray:
    v = np.asarray(scores, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] == 0:
        raise ValueError(f"scores must be a non-empty 1-D array (one validation score per trial), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("scores must be finite")
    return v


def _check_method(method: str) -> str:
    if method not in ESTIMATORS:
        raise ValueError(f"method must be one of {ESTIMATORS}, got {method!r}")
    return method


def _check_ns(ns, N: int, method: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(ns))
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"n must be a positive integer or a non-empty 1-D array of them, got shape {arr.shape}")
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise ValueError(f"n must hold integers (numbers of trials), got {arr[:5].tolist()}")
    arr = arr.astype(np.int64)
    if np.any(arr < 1):
        raise ValueError(f"n must be >= 1, got min {int(arr.min())}")
    if method == "unbiased" and np.any(arr > N):
        raise ValueError(f"method 'unbiased' samples without replacement: n must be <= N={N}, got max {int(arr.max())}")
    return arr


def expected_max_weights(N: int, ns, *, method: str = "with_replacement") -> np.ndarray:
    """Probability that the maximum of n trials is the i-th smallest of N observed scores.

    Parameters
    ----------
    N : int
        Number of observed scores.
    ns : int or array-like of int
        Numbers of trials n (>= 1; <= N for ``method="unbiased"``).
    method : {"with_replacement", "unbiased"}, default="with_replacement"
        The estimator (``ESTIMATORS``).

    Returns
    -------
    ndarray of shape (len(ns), N)
        ``w[j, i] = P(max of ns[j] trials = v_(i+1))``; each row sums to 1 and ``E[max_n] = w @ sorted(v)``.

    Notes
    -----
    With replacement (Dodge et al. 2019)::

        w[n, i] = (i/N)^n - ((i-1)/N)^n

    Without replacement, the unbiased U-statistic (Dodge et al. 2021)::

        w[n, i] = C(i-1, n-1) / C(N, n)        (0 for i < n)

    computed in log space (``scipy.special.gammaln``).

    References
    ----------
    Dodge, Gururangan, Card, Schwartz & Smith, "Show Your Work: Improved Reporting of Experimental Results",
    EMNLP 2019 (arXiv 1909.03004); Dodge, Gururangan, Card, Schwartz & Smith, "Expected Validation
    Performance and Estimation of a Random Variable's Maximum", Findings of EMNLP 2021 (arXiv 2110.00613).
    """
    if int(N) != N or N < 1:
        raise ValueError(f"N must be a positive integer, got {N}")
    N = int(N)
    method = _check_method(method)
    ns = _check_ns(ns, N, method)
    i = np.arange(1, N + 1, dtype=np.float64)
    n = ns[:, None].astype(np.float64)
    if method == "with_replacement":
        return (i / N) ** n - ((i - 1.0) / N) ** n
    # log C(i-1, n-1) - log C(N, n), zero where i < n
    valid = i[None, :] >= n
    ii = np.where(valid, i[None, :], n)  # placeholder where invalid, masked below
    log_num = gammaln(ii) - gammaln(n) - gammaln(ii - n + 1.0)  # log C(i-1, n-1)
    log_den = gammaln(N + 1.0) - gammaln(n + 1.0) - gammaln(N - n + 1.0)  # log C(N, n)
    logw = log_num - log_den
    return np.where(valid, np.exp(logw), 0.0)


def expected_max(scores, n, *, method: str = "with_replacement") -> float | np.ndarray:
    """Expected maximum score of n trials, estimated from the observed scores.

    Parameters
    ----------
    scores : array-like of shape (N,)
        Observed validation scores, one per trial (higher is better).
    n : int or array-like of int
        Numbers of trials.
    method : {"with_replacement", "unbiased"}, default="with_replacement"
        The estimator (``ESTIMATORS``; module docstring).

    Returns
    -------
    float or ndarray
        ``E[max_n]`` (a float for an int ``n``, else one value per ``n``).

    Notes
    -----
    ``E[max_n] = sum_i v_(i) w[n, i]`` with ``v_(1) <= ... <= v_(N)`` and the weights of
    ``expected_max_weights``: ``(i/N)^n - ((i-1)/N)^n`` with replacement, ``C(i-1, n-1) / C(N, n)`` without.

    References
    ----------
    Dodge et al., "Show Your Work", EMNLP 2019 (arXiv 1909.03004); Dodge et al. 2021 (arXiv
    2110.00613) for the unbiased estimator.
    """
    v = np.sort(_check_scores(scores))
    scalar = np.ndim(n) == 0
    w = expected_max_weights(v.shape[0], n, method=method)
    out = w @ v
    return float(out[0]) if scalar else out


@dataclass(frozen=True)
class ExpectedMaxCurve:
    """Result of ``expected_max_curve``; arrays are indexed like ``n``.

    Attributes:
        n: (T,) numbers of trials.
        expected_max: E[max_n]; variance, sd: Var[max_n] = E[max_n^2] - E[max_n]^2 and its square root.
        ci_low, ci_high: bootstrap percentile interval of E[max_n] at level 1 - alpha (None without bootstrap).
        boot_sd: SD of the bootstrap replicates of E[max_n] (None without bootstrap).
        extrapolated: (T,) bool, n > N (with replacement only).
        N: number of observed scores; method, estimator: the estimator used.
        mean, max: of the observed scores (the curve's values at n = 1 and its limit).
        n_bootstrap, alpha: bootstrap settings; rng_seed: the int seed given (None for a Generator or None).

    ``as_dict`` writes ``n_bootstrap`` as ``n_boot`` (the analysis result schema's key).
    """

    n: np.ndarray
    expected_max: np.ndarray
    variance: np.ndarray
    sd: np.ndarray
    ci_low: np.ndarray | None
    ci_high: np.ndarray | None
    boot_sd: np.ndarray | None
    extrapolated: np.ndarray
    N: int
    method: str
    estimator: str
    mean: float
    max: float
    n_bootstrap: int
    alpha: float
    rng_seed: int | None
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every array as a list."""
        tl = lambda a: None if a is None else a.tolist()  # noqa: E731
        return {
            "estimator": self.estimator,
            "method": self.method,
            "N": self.N,
            "n": tl(self.n),
            "expected_max": tl(self.expected_max),
            "variance": tl(self.variance),
            "sd": tl(self.sd),
            "ci_low": tl(self.ci_low),
            "ci_high": tl(self.ci_high),
            "boot_sd": tl(self.boot_sd),
            "extrapolated": tl(self.extrapolated),
            "mean": self.mean,
            "max": self.max,
            "n_boot": self.n_bootstrap,
            "alpha": self.alpha,
            "rng_seed": self.rng_seed,
            "notes": list(self.notes),
        }


def expected_max_curve(
    scores,
    *,
    n_max: int | None = None,
    method: str = "with_replacement",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    rng: int | np.random.Generator | None = 0,
) -> ExpectedMaxCurve:
    """Expected maximum validation performance for n = 1..n_max trials, with bootstrap intervals.

    Parameters
    ----------
    scores : array-like of shape (N,)
        Observed validation scores (higher is better; pass ``-loss`` for a loss).
    n_max : int, optional
        Last n of the curve; default N. With ``method="with_replacement"`` n_max > N is allowed and the
        points n > N are flagged ``extrapolated``; ``"unbiased"`` needs n_max <= N.
    method : {"with_replacement", "unbiased"}, default="with_replacement"
        The estimator (``ESTIMATORS``): Dodge et al. 2019, or without replacement (Dodge et al. 2021).
    n_bootstrap : int, default=1000
        Bootstrap resamples of the N scores (0 for none).
    alpha : float, default=0.05
        The intervals are the alpha/2 and 1 - alpha/2 percentiles.
    rng : int, numpy.random.Generator or None, default=0
        Seed of ``np.random.default_rng``, or a Generator.

    Returns
    -------
    ExpectedMaxCurve
        The curve, its plug-in variance and SD, bootstrap intervals and settings.

    Notes
    -----
    ``E[max_n] = sum_i v_(i) w[n, i]``, ``Var[max_n] = sum_i v_(i)^2 w[n, i] - E[max_n]^2`` with the weights
    of ``expected_max_weights``. The bootstrap resamples the N scores with replacement
    (``gen.integers(0, N, (n_bootstrap, N))``) and recomputes the whole curve; caveats near n = N are in
    the module docstring.

    References
    ----------
    Dodge, Gururangan, Card, Schwartz & Smith, "Show Your Work: Improved Reporting of Experimental Results",
    EMNLP 2019 (arXiv 1909.03004); Dodge et al., "Expected Validation Performance and Estimation of a
    Random Variable's Maximum", Findings of EMNLP 2021 (arXiv 2110.00613).
    """
    v = np.sort(_check_scores(scores))
    N = int(v.shape[0])
    method = _check_method(method)
    if n_max is None:
        n_max = N
    if int(n_max) != n_max or n_max < 1:
        raise ValueError(f"n_max must be a positive integer, got {n_max}")
    n_max = int(n_max)
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap}")
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    ns = np.arange(1, n_max + 1)
    w = expected_max_weights(N, ns, method=method)  # (T, N)
    e1 = w @ v
    e2 = w @ (v * v)
    var = np.maximum(e2 - e1 * e1, 0.0)  # clip rounding below 0
    notes = []
    extrap = ns > N
    if extrap.any():
        notes.append(f"n > N={N} extrapolates from the empirical distribution; it cannot exceed the observed max")
    lo = hi = bsd = None
    if n_bootstrap > 0:
        gen = np.random.default_rng(rng)
        idx = gen.integers(0, N, size=(int(n_bootstrap), N))
        boot = np.sort(v[idx], axis=1) @ w.T  # (n_bootstrap, T)
        lo = np.percentile(boot, 100.0 * alpha / 2.0, axis=0)
        hi = np.percentile(boot, 100.0 * (1.0 - alpha / 2.0), axis=0)
        bsd = boot.std(axis=0, ddof=1) if n_bootstrap > 1 else np.zeros_like(e1)
    return ExpectedMaxCurve(
        n=ns, expected_max=e1, variance=var, sd=np.sqrt(var), ci_low=lo, ci_high=hi, boot_sd=bsd,
        extrapolated=extrap, N=N, method=method, estimator=_ESTIMATOR[method], mean=float(v.mean()),
        max=float(v[-1]), n_bootstrap=int(n_bootstrap), alpha=float(alpha),
        rng_seed=None if rng is None or isinstance(rng, np.random.Generator) else rng, notes=notes,
    )
