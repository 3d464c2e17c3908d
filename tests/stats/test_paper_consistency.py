"""The macro/micro paper's pairwise readings (Bui/Zhou, Savova & Wang 2025) against a plain pair-by-pair loop
and scipy's Pearson correlation."""

import itertools

import numpy as np
import pytest
from scipy.stats import pearsonr

from seedlab.stats import agreement as ag


def _runs(seed, n=5, m=60, c=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, m)
    preds = np.where(rng.random((n, m)) < 0.7, labels, rng.integers(0, c, (n, m)))
    return preds, labels


def _loop(preds, labels):
    """Each pair of runs, each instance, counted one at a time."""
    n, m = preds.shape
    same, both_right = [], []
    for i, j in itertools.combinations(range(n), 2):
        same.append(sum(int(preds[i, k] == preds[j, k]) for k in range(m)) / m)
        both_right.append(sum(int(preds[i, k] == labels[k] and preds[j, k] == labels[k]) for k in range(m)) / m)
    return np.array(same), np.array(both_right)


@pytest.mark.parametrize("seed,n,c", [(0, 2, 2), (1, 5, 3), (2, 8, 4)])
def test_consistency_and_correct_consistency_match_a_pair_loop(seed, n, c):
    preds, labels = _runs(seed, n=n, c=c)
    same, both_right = _loop(preds, labels)
    got = ag.pairwise_consistency(preds, labels)
    assert got["n_runs"] == n and got["n_pairs"] == n * (n - 1) // 2 == len(same)
    for key, values in (("consistency", same), ("correct_consistency", both_right)):
        summary = got[key]
        assert summary["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert summary["sd"] == pytest.approx(values.std(), abs=1e-12) and summary["ddof"] == 0
        assert (summary["min"], summary["max"]) == pytest.approx((values.min(), values.max()), abs=1e-12)
    assert ag.correct_consistency(preds, labels) == pytest.approx(both_right.mean(), abs=1e-12)
    assert got["consistency"]["mean"] == pytest.approx(ag.agreement_pairwise(preds), abs=1e-12)
    assert both_right.mean() <= same.mean()  # both right implies equal labels


def test_correct_consistency_is_not_consistency():
    """Runs that agree on wrong labels are consistent but not correctly consistent."""
    labels = np.array([0, 1, 0, 1])
    preds = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 1]])
    got = ag.pairwise_consistency(preds, labels)
    assert got["consistency"]["mean"] == pytest.approx((1 + 0.75 + 0.75) / 3)
    assert got["correct_consistency"]["mean"] == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    assert ag.pairwise_consistency(preds)["correct_consistency"] is None  # needs the gold labels


def test_regression_reading_is_the_mean_pearson_correlation_between_runs():
    rng = np.random.default_rng(3)
    target = rng.normal(size=50)
    values = target[None, :] + rng.normal(scale=[[0.2], [0.5], [1.0], [2.0]], size=(4, 50))
    expected = [pearsonr(values[i], values[j])[0] for i, j in itertools.combinations(range(4), 2)]
    got = ag.pairwise_consistency(values, regression=True)
    assert got["pearson"]["mean"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert got["pearson"]["sd"] == pytest.approx(np.std(expected), abs=1e-12)
    assert got["n_pairs"] == 6 and got["n_undefined"] == 0
    assert ag.pairwise_pearson(values) == pytest.approx(np.mean(expected), abs=1e-12)


def test_a_constant_regression_run_leaves_its_pairs_out():
    values = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.5, 2.0, 5.0], [3.0, 3.0, 3.0, 3.0]])
    got = ag.pairwise_consistency(values, regression=True)
    assert got["n_undefined"] == 2 and got["pearson"]["n"] == 1
    assert got["pearson"]["mean"] == pytest.approx(pearsonr(values[0], values[1])[0], abs=1e-12)
    assert np.isnan(ag.pairwise_pearson(values[[2, 2]] + [[0.0], [1.0]]))  # every pair undefined


@pytest.mark.parametrize("bad,match", [(np.zeros((1, 5), int), "at least 2 runs"), (np.zeros(5, int), "2-D")])
def test_bad_input_is_a_one_line_error(bad, match):
    with pytest.raises(ValueError, match=match):
        ag.pairwise_consistency(bad)
    with pytest.raises(ValueError, match="one gold label per instance"):
        ag.correct_consistency(np.zeros((2, 5), int), np.zeros(4, int))
