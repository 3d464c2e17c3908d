"""Almost Stochastic Order (ASO): is model A better than model B over seeds, not just on average?

del Barrio, Cuesta-Albertos & Matrán, "An optimal transportation approach for assessing almost stochastic
order", The Mathematics of the Uncertain, 2018 (arXiv 1705.01788); Dror, Shlomov & Reichart, "Deep Dominance -
How to Properly Compare Deep Neural Models", ACL 2019; Ulmer, Hardmeier & Frellsen, "deep-significance: Easy
and Meaningful Significance Testing in the Age of Neural Networks", 2022 (arXiv 2204.06815, the `deepsig`
package, whose definitions this module follows except where said below).

Scores are one number per run (higher = better). With ``F^-1`` and ``G^-1`` the empirical quantile functions of
A's and B's scores, the violation ratio is the share of the squared 2-Wasserstein distance that lies where A's
quantile is below B's (where "A is better than B" is violated)::

    W2^2(F, G)   = int_0^1 (F^-1(t) - G^-1(t))^2 dt
    eps_W2(F, G) = int_{t: F^-1(t) < G^-1(t)} (F^-1(t) - G^-1(t))^2 dt / W2^2(F, G)     (0.5 when W2 = 0)

``eps = 0``: A's scores stochastically dominate B's; ``eps = 1``: B's dominate A's; ``eps(B, A) = 1 - eps(A, B)``.
The empirical quantile function is the left-continuous inverse of the empirical CDF,
``F^-1(t) = x_(ceil(n t))`` (``x_(1) <= ... <= x_(n)``), deepsig's ``get_quantile_function``.

The test (del Barrio et al. Theorem 2; Dror et al. 2019 eq. 6): with ``lambda = n m / (n + m)``, ``sigma`` the
bootstrap SD of ``sqrt(lambda) (eps*_W2 - eps_W2)`` and ``alpha = 1 - confidence_level``::

    eps_min = clip(eps_W2 - sigma / sqrt(lambda) * Phi^-1(alpha), 0, 1)

the smallest ``eps`` for which "A is eps-almost stochastically larger than B" is not rejected at level alpha.
Decision rule: A almost stochastically dominates B when ``eps_min < threshold`` (0.2 by default, Ulmer et al.'s
recommendation; 0.5 is the weakest sensible threshold). Each bootstrap replicate resamples A's n scores and B's m
scores with replacement and recomputes ``eps_W2``; ``sigma`` is the population SD (ddof=0) of the replicates.

Where seedlab differs from deepsig 1.2.8 (``deepsig.aso.aso`` / ``multi_aso``), and why:

* The integral. deepsig sums over the grid ``t = dt, 2 dt, ..., < 1`` (``dt = 0.005`` in ``aso``) and leaves the
  first grid point out of the numerator only (``diff[1:]``, meant to skip t = 0, which is not on the grid), so
  its ratio is lower by ``dt (G^-1(dt) - F^-1(dt))^2 / W2^2`` whenever A's smallest score is below B's (also in
  every bootstrap replicate where that happens), and its grid leaves out the top ``dt`` of the unit interval.
  seedlab integrates the two step functions exactly (``dt=None``, the default and what ``seedlab analyze``
  reports): both are constant between the breakpoints ``i/n`` and ``j/m``, so the integral is a finite sum with
  no discretisation error. ``dt=<float>`` reproduces deepsig's sum as it is, first-point omission included, to
  check against deepsig or to reproduce a number computed with it (``tests/stats/test_aso.py``: equal to
  deepsig's ratio to rounding, eps_min within bootstrap error; the grid converges to the exact integral as
  dt -> 0).
* Multiple comparisons. deepsig's ``num_comparisons`` raises the confidence level to
  ``c + (1 - c) / K``, i.e. ``alpha' = alpha (1 - 1/K)``, which is Bonferroni's ``alpha / K`` only for K = 2;
  ``multi_aso`` uses K = number of unordered model pairs. seedlab applies Bonferroni, ``alpha' = alpha / K``
  (``confidence' = 1 - (1 - c) / K``), with K = the number of *ordered* pairs reported (``aso_pairs``), since
  each ordered pair is its own one-sided test "A dominates B".
* The bootstrap. deepsig draws each replicate as ``F^-1(U)`` with ``U`` uniform from the legacy global RNG reseeded
  with ``seed + i`` per replicate; seedlab draws resampling indices from ``np.random.default_rng(rng)`` (one
  ``integers(0, n, (n_bootstrap, n))`` for A, then one for B). Both are resampling with replacement from the
  empirical distribution, so results agree within bootstrap error, not bit for bit.
* Defaults shared with deepsig: ``confidence_level = 0.95``, ``n_bootstrap = 1000`` (deepsig's
  ``num_bootstrap_iterations``), ``sigma`` with ddof=0, ``eps_W2 = 0.5`` when ``W2 = 0`` (deepsig warns).

Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Any

import numpy as np
from scipy.special import ndtri

__all__ = ["ASOResult", "violation_ratio", "almost_stochastic_order", "aso_pairs", "DEFAULT_THRESHOLD"]

#: Ulmer et al. (2022): A dominates B when eps_min < 0.2 (a threshold trading off type I and II error)
DEFAULT_THRESHOLD = 0.2
ESTIMATOR = ("Almost Stochastic Order (del Barrio et al. 2018; Dror et al. 2019): eps_min of the bootstrap test, "
             "exact integral of the empirical quantile functions")


def _scores(name: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array of scores (one per run), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite")
    return v


def _pieces(n: int, m: int, dt: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where to read the two sorted samples and with what weight: (index into A, index into B, weight in the
    denominator, weight in the numerator).

    Exact (dt None): the pieces between consecutive breakpoints i/n and j/m, found in integer units of 1/(n m)
    so that no rounding moves a breakpoint; on (u_{k-1}, u_k] the quantile index is ceil(n u_k) - 1.
    Grid (dt): deepsig's points t = arange(dt, 1, dt), index clip(ceil(n t) - 1, 0, n - 1), weight dt, and, as
    deepsig's numerator sums diff[1:], weight 0 for the first point in the numerator."""
    if dt is None:
        units = np.union1d(np.arange(n + 1) * m, np.arange(m + 1) * n)  # 0 .. n m
        right = units[1:]
        ia = -(-right // m) - 1  # ceil(right / m) - 1 = ceil(n t) - 1 at t = right / (n m)
        ib = -(-right // n) - 1
        w = np.diff(units) / float(n * m)
        return ia, ib, w, w
    if not (0 < dt < 1):
        raise ValueError(f"dt must lie in (0, 1) or be None (exact integral), got {dt}")
    t = np.arange(dt, 1, dt)
    ia = np.clip(np.ceil(n * t).astype(np.int64) - 1, 0, n - 1)
    ib = np.clip(np.ceil(m * t).astype(np.int64) - 1, 0, m - 1)
    w = np.full(t.shape, dt)
    w_num = w.copy()
    w_num[0] = 0.0
    return ia, ib, w, w_num


def _ratio(sorted_a: np.ndarray, sorted_b: np.ndarray, pieces) -> np.ndarray:
    """eps_W2 of sorted samples (..., n) and (..., m), vectorised over leading axes."""
    ia, ib, w, w_num = pieces
    f, g = sorted_a[..., ia], sorted_b[..., ib]
    diff2 = (g - f) ** 2
    total = (diff2 * w).sum(axis=-1)
    violated = np.where(f < g, diff2 * w_num, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, violated / np.where(total > 0, total, 1.0), 0.5)


def violation_ratio(scores_a, scores_b, *, dt: float | None = None) -> float:
    """The violation ratio eps_W2 of A over B: how far A's scores fall short of stochastically dominating B's.

    Parameters
    ----------
    scores_a, scores_b : array-like of shape (n,) and (m,)
        One score per run of A and of B (higher = better); n and m may differ.
    dt : float or None, default=None
        None: the exact integral of the two empirical quantile step functions. A float: deepsig's Riemann sum
        over ``t = dt, 2 dt, ..., < 1`` as deepsig computes it (module docstring).

    Returns
    -------
    float
        ``int_{F^-1 < G^-1} (F^-1 - G^-1)^2 / int (F^-1 - G^-1)^2`` in [0, 1]; 0.5 when the quantile functions are
        equal (W2 = 0). 0: A dominates B; 1: B dominates A.

    References
    ----------
    del Barrio, Cuesta-Albertos & Matrán, "An optimal transportation approach for assessing almost stochastic
    order", 2018 (arXiv 1705.01788), eq. (4)-(5); Dror, Shlomov & Reichart, "Deep Dominance", ACL 2019.
    """
    a, b = np.sort(_scores("scores_a", scores_a)), np.sort(_scores("scores_b", scores_b))
    return float(_ratio(a, b, _pieces(len(a), len(b), dt)))


@dataclass(frozen=True)
class ASOResult:
    """Result of ``almost_stochastic_order`` (A over B).

    Attributes:
        eps_min: the test's upper bound on the violation ratio (A almost dominates B when below the threshold).
        violation_ratio: eps_W2 of the observed scores.
        sigma: bootstrap SD of sqrt(lambda) (eps* - eps_W2), ddof=0.
        confidence_level: the level asked for; corrected_confidence: after Bonferroni over n_comparisons.
        n_a, n_b: scores per side; n_bootstrap; dt (None: exact integral); rng_seed: the int seed or None.
    """

    eps_min: float
    violation_ratio: float
    sigma: float
    confidence_level: float
    corrected_confidence: float
    n_comparisons: int
    n_a: int
    n_b: int
    n_bootstrap: int
    dt: float | None
    rng_seed: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"eps_min": self.eps_min, "violation_ratio": self.violation_ratio, "sigma": self.sigma,
                "n_a": self.n_a, "n_b": self.n_b}


def _generator(rng) -> tuple[np.random.Generator, int | None]:
    if isinstance(rng, np.random.Generator):
        return rng, None
    return np.random.default_rng(rng), (int(rng) if rng is not None else None)


def _check_level(confidence_level: float, n_comparisons: int) -> float:
    if not (0 < confidence_level < 1):
        raise ValueError(f"confidence_level must lie in (0, 1), e.g. 0.95, got {confidence_level}")
    if int(n_comparisons) != n_comparisons or n_comparisons < 1:
        raise ValueError(f"n_comparisons must be an integer >= 1, got {n_comparisons}")
    return 1.0 - (1.0 - confidence_level) / n_comparisons  # Bonferroni


def almost_stochastic_order(scores_a, scores_b, *, confidence_level: float = 0.95, n_comparisons: int = 1,
                            n_bootstrap: int = 1000, dt: float | None = None, rng=0) -> ASOResult:
    """Almost Stochastic Order test of "A's scores are stochastically larger than B's": ``eps_min`` of A over B.

    Parameters
    ----------
    scores_a, scores_b : array-like of shape (n,) and (m,)
        One score per run (higher = better). A is the model suspected to be better.
    confidence_level : float, default=0.95
        1 - alpha of the one-sided test, before the correction (deepsig's default).
    n_comparisons : int, default=1
        Number of tests this one belongs to; the level becomes ``1 - (1 - confidence_level) / n_comparisons``
        (Bonferroni; deepsig differs, see the module docstring).
    n_bootstrap : int, default=1000
        Bootstrap replicates for sigma (deepsig's ``num_bootstrap_iterations``).
    dt : float or None, default=None
        None: exact integrals; a float: deepsig's grid (``violation_ratio``).
    rng : int, numpy.random.Generator or None, default=0
        Seed of ``np.random.default_rng`` or a Generator. Draws: A's indices ``(n_bootstrap, n)``, then B's.

    Returns
    -------
    ASOResult
        ``eps_min = clip(eps_W2 - sigma / sqrt(lambda) * Phi^-1(1 - corrected_confidence), 0, 1)`` with
        ``lambda = n m / (n + m)``, and the parts it is made of.

    References
    ----------
    del Barrio, Cuesta-Albertos & Matrán 2018 (arXiv 1705.01788), Theorem 2; Dror, Shlomov & Reichart, "Deep
    Dominance - How to Properly Compare Deep Neural Models", ACL 2019, eq. (6); Ulmer, Hardmeier & Frellsen,
    "deep-significance", 2022 (arXiv 2204.06815).
    """
    a, b = np.sort(_scores("scores_a", scores_a)), np.sort(_scores("scores_b", scores_b))
    level = _check_level(confidence_level, n_comparisons)
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be an integer >= 1, got {n_bootstrap}")
    gen, seed = _generator(rng)
    n, m = len(a), len(b)
    pieces = _pieces(n, m, dt)
    observed = float(_ratio(a, b, pieces))
    boot_a = np.sort(a[gen.integers(0, n, size=(n_bootstrap, n))], axis=1)
    boot_b = np.sort(b[gen.integers(0, m, size=(n_bootstrap, m))], axis=1)
    replicates = _ratio(boot_a, boot_b, pieces)
    root_lambda = np.sqrt(n * m / (n + m))
    sigma = float(np.std(root_lambda * (replicates - observed)))
    eps_min = float(np.clip(observed - sigma / root_lambda * ndtri(1.0 - level), 0.0, 1.0))
    return ASOResult(eps_min, observed, sigma, float(confidence_level), float(level), int(n_comparisons), n, m,
                     int(n_bootstrap), dt, seed)


def aso_pairs(scores: dict, *, threshold: float = DEFAULT_THRESHOLD, confidence_level: float = 0.95,
              n_bootstrap: int = 1000, dt: float | None = None, rng=0) -> dict[str, Any]:
    """ASO for every ordered pair of named score samples, Bonferroni-corrected over the ordered pairs.

    Parameters
    ----------
    scores : dict of str to array-like
        Name (model, method, condition) -> one score per run; at least two names.
    threshold : float, default=0.2
        A almost stochastically dominates B when ``eps_min(A, B) < threshold`` (Ulmer et al. 2022's
        recommendation; at most 0.5).
    confidence_level : float, default=0.95
        Before the correction; the test of each pair runs at ``1 - (1 - confidence_level) / K``, K = the number
        of ordered pairs.
    n_bootstrap : int, default=1000
        Bootstrap replicates per pair.
    dt : float or None, default=None
        As in ``violation_ratio``.
    rng : int, numpy.random.Generator or None, default=0
        One Generator for all pairs, consumed pair after pair in ``itertools.permutations(scores)`` order.

    Returns
    -------
    dict
        ``names``, ``threshold``, ``confidence_level``, ``n_comparisons``, ``corrected_confidence``,
        ``n_bootstrap``, ``rng_seed``, ``eps_min`` (matrix, row A over column B, diagonal None),
        ``pairs`` (per ordered pair: a, b, eps_min, violation_ratio, sigma, n_a, n_b, ``dominates``), and
        ``dominant`` (the pairs with ``eps_min < threshold``), and ``decision_rule`` in words.

    References
    ----------
    del Barrio et al. 2018 (arXiv 1705.01788); Dror et al., ACL 2019; Ulmer et al. 2022 (arXiv 2204.06815),
    section 3 (multiple comparisons with Bonferroni, the threshold 0.2); Bonferroni 1936.
    """
    names = [str(k) for k in scores]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"scores must name at least two distinct samples, got {names}")
    if not (0 < threshold <= 0.5):
        raise ValueError(f"threshold must lie in (0, 0.5], e.g. 0.2, got {threshold}")
    gen, seed = _generator(rng)
    values = {str(k): v for k, v in scores.items()}
    ordered = list(permutations(names, 2))
    k = len(ordered)
    matrix = [[None] * len(names) for _ in names]
    pairs = []
    level = None
    for a, b in ordered:
        res = almost_stochastic_order(values[a], values[b], confidence_level=confidence_level, n_comparisons=k,
                                      n_bootstrap=n_bootstrap, dt=dt, rng=gen)
        level = res.corrected_confidence
        matrix[names.index(a)][names.index(b)] = res.eps_min
        pairs.append({"a": a, "b": b, **res.as_dict(), "dominates": bool(res.eps_min < threshold)})
    return {
        "names": names, "threshold": float(threshold), "confidence_level": float(confidence_level),
        "n_comparisons": k, "corrected_confidence": level, "n_bootstrap": int(n_bootstrap), "rng_seed": seed,
        "eps_min": matrix, "pairs": pairs,
        "dominant": [[p["a"], p["b"]] for p in pairs if p["dominates"]],
        "decision_rule": (f"A almost stochastically dominates B when eps_min(A, B) < {threshold:g}, at confidence "
                          f"{confidence_level:g} Bonferroni-corrected over {k} ordered pairs "
                          f"(each test at {level:.6g})"),
    }
