"""Almost Stochastic Order (seedlab.stats.aso): the exact integral, deepsig's definitions where they are the same,
the stated differences where they are not, and eps_min on score distributions with a known stochastic order."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from deepsig.aso import aso as deepsig_test, compute_violation_ratio  # the reference (test extra)
from scipy.stats import norm

from seedlab.stats.aso import aso_pairs, almost_stochastic_order, violation_ratio


def brute_ratio(a, b) -> float:
    """eps_W2 on the common refinement into L = n m equal pieces: each lies inside one step of both quantile
    functions, read at its midpoint with numpy's inverted-CDF quantile (the same left-continuous inverse)."""
    n, m = len(a), len(b)
    t = (np.arange(n * m) + 0.5) / (n * m)
    f = np.quantile(a, t, method="inverted_cdf")
    g = np.quantile(b, t, method="inverted_cdf")
    sq = (f - g) ** 2
    return float(sq[f < g].sum() / sq.sum()) if sq.sum() > 0 else 0.5


def deepsig_ratio(a, b, dt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute_violation_ratio(scores_a=a, scores_b=b, dt=dt)


def deepsig_eps(a, b, *, confidence_level, num_comparisons=1, n, dt, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(deepsig_test(a, b, confidence_level=confidence_level, num_comparisons=num_comparisons,
                                 num_bootstrap_iterations=n, dt=dt, show_progress=False, seed=seed))


SAMPLES = [(5, 5), (5, 7), (10, 3), (8, 12), (30, 30)]


@pytest.mark.parametrize("n,m", SAMPLES)
def test_exact_integral_equals_the_common_refinement(n, m):
    gen = np.random.default_rng(n * 100 + m)
    a, b = gen.normal(0.2, 1.0, n), gen.normal(0.0, 1.5, m)
    assert violation_ratio(a, b) == pytest.approx(brute_ratio(a, b), abs=1e-12)
    assert violation_ratio(b, a) == pytest.approx(1 - violation_ratio(a, b), abs=1e-12)  # eps(B, A) = 1 - eps(A, B)
    assert violation_ratio(a, a) == 0.5  # W2 = 0: deepsig's convention


def test_ties_and_degenerate_samples():
    assert violation_ratio([1.0, 1.0], [0.0, 0.0]) == 0.0  # A above B everywhere
    assert violation_ratio([0.0], [1.0]) == 1.0
    assert violation_ratio([0.5, 0.5, 0.5], [0.5]) == 0.5  # equal quantile functions
    with pytest.raises(ValueError, match="non-empty"):
        violation_ratio([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        violation_ratio([np.nan], [1.0])
    with pytest.raises(ValueError, match="dt"):
        violation_ratio([1.0], [0.0], dt=1.5)


@pytest.mark.parametrize("n,m", SAMPLES)
def test_with_dt_the_ratio_is_deepsigs_and_deepsig_drops_the_first_grid_point(n, m):
    """dt=<float> reproduces deepsig's violation ratio (to rounding). And deepsig's ratio is the grid sum with
    the first grid point left out of the numerator only: lower by exactly dt (G^-1(dt) - F^-1(dt))^2 / W2^2 when
    A's minimum is below B's, equal otherwise (the full grid sum computed here by hand)."""
    dt = 0.005
    gen = np.random.default_rng(7 + n + 10 * m)
    for shift in (0.8, -0.3):
        a, b = gen.normal(shift, 1.0, n), gen.normal(0.0, 1.0, m)
        theirs = deepsig_ratio(a, b, dt)
        assert violation_ratio(a, b, dt=dt) == pytest.approx(theirs, rel=1e-12, abs=1e-15)
        t = np.arange(dt, 1, dt)
        f = np.sort(a)[np.clip(np.ceil(n * t).astype(int) - 1, 0, n - 1)]
        g = np.sort(b)[np.clip(np.ceil(m * t).astype(int) - 1, 0, m - 1)]
        full = np.sum(((g - f) ** 2 * dt)[f < g]) / np.sum((g - f) ** 2 * dt)
        first = dt * (g[0] - f[0]) ** 2 / np.sum((g - f) ** 2 * dt) if f[0] < g[0] else 0.0
        assert theirs == pytest.approx(full - first, rel=1e-12, abs=1e-15)
        assert (first > 0) == (a.min() < b.min())


def test_the_grid_converges_to_the_exact_integral():
    gen = np.random.default_rng(3)
    a, b = gen.normal(0.1, 1.0, 7), gen.normal(0.0, 1.2, 9)
    exact = violation_ratio(a, b)
    errors = [abs(violation_ratio(a, b, dt=dt) - exact) for dt in (0.01, 0.001, 0.0001)]
    assert errors[2] < errors[0] and errors[2] < 2e-4


@pytest.mark.parametrize("n,m,seed", [(5, 5, 27), (8, 12, 96)])  # samples whose eps_min is not clipped at 0 or 1
def test_eps_min_agrees_with_deepsig_within_bootstrap_error(n, m, seed):
    """Same scores, deepsig's grid, different RNGs: deepsig's eps_min at three seeds lies within 4 bootstrap SEs
    of seedlab's mean eps_min, and their mean within 4 SEs of the mean. The SE is the spread of seedlab's eps_min
    over 40 RNG seeds at the same number of replicates. deepsig seeds are spaced by 10_000: its replicate i uses
    seed + i, so consecutive seeds share all but one replicate."""
    dt, B = 0.02, 200
    gen = np.random.default_rng(seed)
    a, b = gen.normal(0.3, 1.0, n), gen.normal(0.0, 1.0, m)
    ours = np.array([almost_stochastic_order(a, b, n_bootstrap=B, dt=dt, rng=s).eps_min for s in range(40)])
    se = ours.std(ddof=1)
    assert 0 < ours.min() and ours.max() < 1 and se > 0
    theirs = np.array([deepsig_eps(a, b, confidence_level=0.95, n=B, dt=dt, seed=10_000 * s) for s in range(3)])
    assert np.all(np.abs(theirs - ours.mean()) < 4 * se), (theirs, ours.mean(), se)
    assert abs(theirs.mean() - ours.mean()) < 4 * se * np.sqrt(1 / 3 + 1 / 40)


def test_bonferroni_is_applied_where_deepsig_is_not_bonferroni():
    """deepsig's num_comparisons=K raises the level to c + (1 - c)/K (alpha' = alpha (1 - 1/K)); seedlab uses
    Bonferroni, 1 - (1 - c)/K. Shown with deepsig itself: its K=6 result equals its uncorrected run at
    c + (1 - c)/6 (same seed, same replicates), and seedlab's level is the stricter one."""
    gen = np.random.default_rng(11)
    a, b = gen.normal(0.3, 1.0, 6), gen.normal(0.0, 1.0, 6)
    corrected = deepsig_eps(a, b, confidence_level=0.95, num_comparisons=6, n=50, dt=0.02, seed=5)
    at_their_level = deepsig_eps(a, b, confidence_level=0.95 + 0.05 / 6, n=50, dt=0.02, seed=5)
    assert corrected == at_their_level
    res = almost_stochastic_order(a, b, n_comparisons=6, n_bootstrap=200, rng=0)
    assert res.corrected_confidence == pytest.approx(1 - 0.05 / 6) and res.corrected_confidence > 0.95 + 0.05 / 6
    looser = almost_stochastic_order(a, b, n_comparisons=1, n_bootstrap=200, rng=0)
    # same replicates (same rng), a stricter level: a larger upper bound
    assert res.sigma == looser.sigma and res.eps_min >= looser.eps_min
    assert res.eps_min == pytest.approx(min(1.0, res.violation_ratio + res.sigma / np.sqrt(3.0)
                                            * norm.ppf(1 - 0.05 / 6)))


def test_the_ratio_is_consistent_for_a_known_pair_of_distributions():
    """A ~ U(0, 1), B ~ U(0.225, 0.725): the quantile difference 0.5 (t - 0.45) is negative below t0 = 0.45, so the
    true eps_W2 = t0^3 / (t0^3 + (1 - t0)^3) = 0.3538."""
    t0 = 0.45
    truth = t0**3 / (t0**3 + (1 - t0) ** 3)
    gen = np.random.default_rng(0)
    est = [violation_ratio(gen.uniform(0, 1, 2000), gen.uniform(0.225, 0.725, 2000)) for _ in range(10)]
    assert np.mean(est) == pytest.approx(truth, abs=0.01)


def test_eps_min_on_a_known_stochastic_order():
    """eps_min near 0 when A dominates, near 1 when B does; the ratio near 0.5 when the two are equal."""
    gen = np.random.default_rng(1)
    dominates, dominated, equal, equal_eps = [], [], [], []
    for r in range(30):
        a, b = gen.normal(1.0, 0.5, 20), gen.normal(0.0, 0.5, 20)
        dominates.append(almost_stochastic_order(a, b, n_bootstrap=300, rng=r).eps_min)
        dominated.append(almost_stochastic_order(b, a, n_bootstrap=300, rng=r).eps_min)
        c, d = gen.normal(0.0, 0.5, 20), gen.normal(0.0, 0.5, 20)
        res = almost_stochastic_order(c, d, n_bootstrap=300, rng=r)
        equal.append(res.violation_ratio)
        equal_eps.append(res.eps_min)
    assert np.mean(np.array(dominates) < 0.2) >= 0.95 and np.median(dominates) < 0.05
    assert np.mean(np.array(dominated) > 0.8) >= 0.95 and np.median(dominated) > 0.95
    assert abs(np.mean(equal) - 0.5) < 0.1
    assert np.mean(np.array(equal_eps) < 0.2) <= 0.05  # equal distributions: "A dominates" at most at the level


def test_aso_pairs_covers_every_ordered_pair_with_one_bonferroni_family():
    gen = np.random.default_rng(2)
    scores = {"small": gen.normal(0.70, 0.01, 8), "base": gen.normal(0.80, 0.01, 8), "large": gen.normal(0.81, 0.01, 8)}
    res = aso_pairs(scores, n_bootstrap=200, rng=0)
    assert res["n_comparisons"] == 6 and res["corrected_confidence"] == pytest.approx(1 - 0.05 / 6)
    assert {(p["a"], p["b"]) for p in res["pairs"]} == {(x, y) for x in scores for y in scores if x != y}
    matrix = res["eps_min"]
    assert all(matrix[i][i] is None for i in range(3))
    for p in res["pairs"]:
        assert matrix[res["names"].index(p["a"])][res["names"].index(p["b"])] == p["eps_min"]
        assert p["dominates"] == (p["eps_min"] < 0.2)
    assert ["base", "small"] in res["dominant"] and ["large", "small"] in res["dominant"]
    assert ["small", "base"] not in res["dominant"]
    # the same pair alone, with the family's level and the Generator at the same position, gives the same number
    gen2 = np.random.default_rng(0)
    first = almost_stochastic_order(scores["small"], scores["base"], n_comparisons=6, n_bootstrap=200, rng=gen2)
    assert first.eps_min == res["pairs"][0]["eps_min"]
    with pytest.raises(ValueError, match="at least two"):
        aso_pairs({"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match="threshold"):
        aso_pairs(scores, threshold=0.7)
