"""Expected maximum validation performance (Dodge et al. 2019) against enumeration and known truths."""

import itertools
import json

import numpy as np
import pytest

from seedlab.stats import expected_max as em


@pytest.mark.parametrize("scores", [[0.3, 0.9, 0.5], [0.7, 0.7, 0.1, 0.4], [1.0, 2.0, 2.0, 2.0, -1.0]])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_with_replacement_equals_enumeration(scores, n):
    v = np.asarray(scores)
    seqs = np.array(list(itertools.product(v, repeat=n)))  # all N^n equally likely draws
    mx = seqs.max(axis=1)
    curve = em.expected_max_curve(v, n_max=4, n_bootstrap=0)
    assert curve.expected_max[n - 1] == pytest.approx(mx.mean(), abs=1e-12)
    assert curve.variance[n - 1] == pytest.approx(mx.var(), abs=1e-12)
    assert em.expected_max(v, n) == pytest.approx(mx.mean(), abs=1e-12)


@pytest.mark.parametrize("scores", [[0.3, 0.9, 0.5, 0.2], [0.7, 0.7, 0.1, 0.4, 0.7]])
def test_unbiased_equals_subset_enumeration(scores):
    v = np.asarray(scores)
    for n in range(1, len(v) + 1):
        mx = np.array([max(s) for s in itertools.combinations(v, n)])
        assert em.expected_max(v, n, method="unbiased") == pytest.approx(mx.mean(), abs=1e-12)


def test_monte_carlo_matches_formula():
    rng = np.random.default_rng(0)
    v = rng.normal(size=25)
    n = 7
    draws = rng.choice(v, size=(200_000, n)).max(axis=1)
    se = draws.std() / np.sqrt(draws.shape[0])
    assert abs(em.expected_max(v, n) - draws.mean()) < 4 * se


@pytest.mark.parametrize("method", em.ESTIMATORS)
def test_limits_and_monotone(method):
    v = np.random.default_rng(1).uniform(size=30)
    c = em.expected_max_curve(v, method=method, n_bootstrap=0)
    assert c.expected_max[0] == pytest.approx(v.mean(), abs=1e-12)  # n = 1 is the mean
    assert c.variance[0] == pytest.approx(v.var(), abs=1e-12)
    assert np.all(np.diff(c.expected_max) >= -1e-12)  # non-decreasing
    assert c.expected_max[-1] <= v.max() + 1e-12
    if method == "unbiased":
        assert c.expected_max[-1] == pytest.approx(v.max(), abs=1e-12)  # n = N takes every score
    else:
        far = em.expected_max(v, [10_000])[0]
        assert far == pytest.approx(v.max(), abs=1e-9)  # n -> infinity tends to the max
    w = em.expected_max_weights(30, np.arange(1, 31), method=method)
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-10) and np.all(w >= -1e-15)


def test_unbiased_is_unbiased_and_with_replacement_is_not():
    """Uniform(0,1) population: E[max of n] = n / (n + 1). Many experiments of N = 8 trials."""
    rng = np.random.default_rng(2)
    N, R = 8, 20_000
    samples = np.sort(rng.uniform(size=(R, N)), axis=1)
    ns = np.arange(1, N + 1)
    truth = ns / (ns + 1.0)
    for method in em.ESTIMATORS:
        est = samples @ em.expected_max_weights(N, ns, method=method).T  # (R, N)
        z = (est.mean(axis=0) - truth) / (est.std(axis=0, ddof=1) / np.sqrt(R))
        if method == "unbiased":
            assert np.all(np.abs(z) < 4.5), z
        else:  # n = 1 is the (unbiased) mean; for n >= 4 the empirical distribution caps the max: biased low
            assert abs(z[0]) < 4.5
            assert np.all(z[3:] < -10), z


def test_bootstrap_intervals_and_json():
    rng = np.random.default_rng(3)
    v = rng.normal(0.8, 0.05, size=20)
    c = em.expected_max_curve(v, n_max=25, n_bootstrap=400, rng=5)
    assert c.ci_low[0] <= c.expected_max[0] <= c.ci_high[0]  # the interval of the mean holds the mean
    assert np.all(c.boot_sd > 0)
    assert np.all(c.ci_low <= c.ci_high)
    assert c.extrapolated.sum() == 5 and c.notes
    again = em.expected_max_curve(v, n_max=25, n_bootstrap=400, rng=5)
    assert np.array_equal(c.ci_low, again.ci_low)  # fixed seed reproduces
    d = json.loads(json.dumps(c.as_dict()))
    assert d["estimator"].startswith("expected max") and len(d["n"]) == 25 and d["N"] == 20


def test_bootstrap_interval_covers_population_value():
    """Coverage of the percentile interval at n = 1 (the mean) and n = 3 is near nominal (loose check)."""
    rng = np.random.default_rng(4)
    N, R = 30, 150
    ns = np.array([1, 3])
    truth = ns / (ns + 1.0)
    hits = np.zeros(2)
    for r in range(R):
        c = em.expected_max_curve(rng.uniform(size=N), n_max=3, method="unbiased", n_bootstrap=300, rng=r)
        hits += (c.ci_low[ns - 1] <= truth) & (truth <= c.ci_high[ns - 1])
    assert np.all(hits / R > 0.82), hits / R


def test_validation():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        em.expected_max_curve([])
    with pytest.raises(ValueError, match="finite"):
        em.expected_max_curve([0.1, np.nan])
    with pytest.raises(ValueError, match="n must be <= N"):
        em.expected_max_curve([0.1, 0.2], n_max=3, method="unbiased")
    with pytest.raises(ValueError, match="method must be"):
        em.expected_max([0.1], 1, method="bogus")
    with pytest.raises(ValueError, match="n must be >= 1"):
        em.expected_max([0.1, 0.2], 0)
    with pytest.raises(ValueError, match="alpha"):
        em.expected_max_curve([0.1, 0.2], alpha=1.5)
