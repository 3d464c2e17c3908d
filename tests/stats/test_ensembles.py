"""Seed ensembles (seedlab.stats.ensembles): k = 1 is the runs themselves, and on runs with a known
per-instance label probability an ensemble's accuracy and PD match the binomial truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from seedlab.stats.agreement import instability_measures
from seedlab.stats.ensembles import ensemble_predict, ensemble_sizes, seed_ensembles
from seedlab.stats.metrics import accuracy
from seedlab.stats.simulate import simulate_experiment


def test_sizes():
    assert ensemble_sizes(1) == [1] and ensemble_sizes(10) == [1, 2, 4, 8] and ensemble_sizes(16)[-1] == 16


def test_k_1_is_the_runs_instability():
    table, _ = simulate_experiment(n_models=1, P=3, F=3, m=150, rng=0)
    preds, probs = table.predictions, table.probs
    res = seed_ensembles(preds, probs, table.labels, n_partitions=20, rng=0)
    one = res["sizes"][0]
    acc = [accuracy(table.labels, p) for p in preds]
    want = instability_measures(preds, probs, acc)
    assert one["k"] == 1 and one["n_ensembles"] == 9
    assert one["score"]["point"] == pytest.approx(np.mean(acc), abs=1e-12)
    for key in ("sd", "pd", "jsd"):
        assert one[key]["point"] == pytest.approx(want[key], abs=1e-9)
        assert one[key]["ci_low"] == one[key]["ci_high"] == one[key]["point"]
    assert one["removed"] == 0.0
    assert [s["k"] for s in res["sizes"]] == [1, 2, 4, 8]
    assert res["sizes"][-1]["n_ensembles"] == 1 and res["sizes"][-1]["pd"] is None  # one ensemble: no pairs
    assert res["sizes"][1]["pd"]["point"] < one["pd"]["point"]  # averaging seeds removes some disagreement


def test_known_answer_for_one_hot_runs():
    """Runs that give instance i label 1 with probability p_i independently, one-hot probabilities: an ensemble
    of k predicts 1 iff more than k/2 runs do (ties go to label 0), with probability Q_i = P(Bin(k, p_i) > k/2);
    expected accuracy mean_i P(ensemble = gold_i) and expected PD between disjoint ensembles mean_i 2 Q_i (1-Q_i)."""
    gen = np.random.default_rng(1)
    n, m = 24, 3000
    p = gen.uniform(0.1, 0.9, m)
    gold = gen.integers(0, 2, m)
    preds = (gen.random((n, m)) < p[None, :]).astype(int)
    probs = np.eye(2)[preds]
    res = seed_ensembles(preds, probs, gold, sizes=[1, 2, 3, 4, 8], n_partitions=40, rng=0)
    for s in res["sizes"]:
        k = s["k"]
        Q = binom.sf(np.floor(k / 2), k, p)  # P(X > k/2)
        acc = np.mean(np.where(gold == 1, Q, 1 - Q))
        pd = np.mean(2 * Q * (1 - Q))
        g = n // k
        assert s["score"]["point"] == pytest.approx(acc, abs=4 * np.sqrt(0.25 / (m * g)) + 1e-3), k
        assert s["pd"]["point"] == pytest.approx(pd, abs=4 * np.sqrt(0.25 / m) / np.sqrt(g - 1) + 1e-3), k
    # majority vote without probabilities is the same rule: identical results for the same RNG seed
    votes = seed_ensembles(preds, None, gold, sizes=[1, 2, 3, 4, 8], n_partitions=40, rng=0)
    assert votes["combine"] == "majority vote" and res["combine"] == "mean probabilities"
    for a, b in zip(res["sizes"], votes["sizes"]):
        assert a["score"] == b["score"] and a["pd"] == b["pd"] and b["jsd"] is None


def test_ensembles_are_disjoint_and_ties_go_to_the_smallest_class():
    labels, mean = ensemble_predict(None, np.array([[[0.6, 0.4]], [[0.4, 0.6]]]))
    assert labels.tolist() == [0] and np.allclose(mean, [[0.5, 0.5]])
    labels, mean = ensemble_predict(np.array([[2, 1], [1, 1]]))
    assert labels.tolist() == [1, 1] and mean is None
    gen = np.random.default_rng(2)
    preds = gen.integers(0, 2, (5, 50))
    res = seed_ensembles(preds, None, gen.integers(0, 2, 50), sizes=[2], n_partitions=10, rng=0)
    assert res["sizes"][0]["n_ensembles"] == 2  # 5 runs: two disjoint pairs, one run sits out
    with pytest.raises(ValueError, match="sizes"):
        seed_ensembles(preds, None, np.zeros(50, dtype=int), sizes=[6])
    with pytest.raises(ValueError, match="n_runs >= 2"):
        seed_ensembles(preds[:1], None, np.zeros(50, dtype=int))
