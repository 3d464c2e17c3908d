"""Predictive multiplicity, flip rates and churn (seedlab.stats.multiplicity) on predictions with a known
per-instance flip probability, and against the agreement module's independent code."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from seedlab.stats.agreement import agreement_matrix, consistency_all, pairwise_disagreement
from seedlab.stats.multiplicity import churn, churn_matrix, flip_rates, most_flipping, rashomon_curve

N_RUNS, M = 12, 4000


def flipped(gen, q, n=N_RUNS, base=None):
    """Binary labels: each run keeps instance k's base label with probability 1 - q_k, independently."""
    base = gen.integers(0, 2, q.shape[0]) if base is None else base
    flips = gen.random((n, q.shape[0])) < q[None, :]
    return np.where(flips, 1 - base[None, :], base[None, :]), base


@pytest.fixture(scope="module")
def known():
    gen = np.random.default_rng(0)
    q = gen.uniform(0, 0.5, M)
    preds, base = flipped(gen, q)
    return q, preds, base


def test_the_flip_rate_histogram_matches_the_binomial_truth(known):
    """Deviating runs = min(X, n - X), X ~ Binomial(n, q_k): the expected count of instances per j is
    sum_k P(min(X, n - X) = j), with the Poisson-binomial variance sum_k p_kj (1 - p_kj)."""
    q, preds, _ = known
    res = flip_rates(preds)
    x = np.arange(N_RUNS + 1)
    pmf = binom.pmf(x[None, :], N_RUNS, q[:, None])  # (m, n+1)
    dev = np.minimum(x, N_RUNS - x)
    p_j = np.stack([pmf[:, dev == j].sum(axis=1) for j in range(N_RUNS // 2 + 1)], axis=1)  # (m, J)
    expected, sd = p_j.sum(axis=0), np.sqrt((p_j * (1 - p_j)).sum(axis=0))
    observed = np.zeros_like(expected)
    observed[: len(res["histogram"]["instances"])] = res["histogram"]["instances"]
    assert np.all(np.abs(observed - expected) < 4 * sd + 1e-9), (observed, expected, sd)
    assert res["histogram"]["deviating"] == list(range(len(res["histogram"]["instances"])))
    assert sum(res["histogram"]["instances"]) == M
    assert res["n_unstable"] == M - res["histogram"]["instances"][0]


def test_per_instance_disagreement_is_unbiased_and_averages_to_pd(known):
    q, preds, _ = known
    res = flip_rates(preds)
    d = res["disagreement"]
    truth = 2 * q * (1 - q)  # two independent runs differ on k
    assert abs(d.mean() - truth.mean()) < 4 * d.std(ddof=1) / np.sqrt(M)
    assert res["mean_disagreement"] == pytest.approx(pairwise_disagreement(preds), abs=1e-12)
    counts = res["counts"]
    assert counts.shape == (M, 2) and np.all(counts.sum(axis=1) == N_RUNS)
    assert np.allclose(res["flip_rate"], 1 - counts.max(axis=1) / N_RUNS)


def test_ambiguity_and_discrepancy(known):
    """Every run in the set: ambiguity = share of instances not unanimous (expected 1 - (1-q)^n - q^n) =
    1 - consistency_all; discrepancy = the largest disagreement of a run with the reference (agreement matrix)."""
    q, preds, _ = known
    gen = np.random.default_rng(1)
    scores = gen.normal(0.8, 0.01, N_RUNS)
    res = rashomon_curve(preds, scores, epsilon=np.inf)
    amb = res["at_epsilon"]["ambiguity"]
    assert amb == pytest.approx(1 - consistency_all(preds), abs=1e-12) == res["ambiguity"][-1]
    truth = 1 - (1 - q) ** N_RUNS - q**N_RUNS
    assert abs(amb - truth.mean()) < 4 * np.sqrt(np.sum(truth * (1 - truth))) / M
    ref = int(np.argmax(scores))
    assert res["reference"] == ref and res["order"][0] == ref
    A = agreement_matrix(preds)
    assert res["at_epsilon"]["discrepancy"] == pytest.approx(max(1 - A[ref, j] for j in range(N_RUNS)), abs=1e-12)
    assert np.allclose(res["disagreement"], [1 - A[ref, j] for j in res["order"]])


def test_the_rashomon_set_follows_epsilon():
    gen = np.random.default_rng(2)
    preds = gen.integers(0, 3, (5, 200))
    scores = np.array([0.80, 0.795, 0.78, 0.80, 0.70])  # ties at the top: the first is the reference
    res = rashomon_curve(preds, scores, epsilon=0.01)
    assert res["reference"] == 0 and res["order"] == [0, 3, 1, 2, 4]
    assert res["gap"] == pytest.approx([0, 0, 0.005, 0.02, 0.10])
    assert res["at_epsilon"]["n_runs"] == 3  # runs 0, 3, 1
    members = preds[[0, 3, 1]]
    assert res["at_epsilon"]["ambiguity"] == pytest.approx(np.mean(np.any(members != preds[0], axis=0)))
    assert res["at_epsilon"]["discrepancy"] == pytest.approx(max(np.mean(p != preds[0]) for p in members))
    assert np.all(np.diff(res["ambiguity"]) >= 0) and np.all(np.diff(res["discrepancy"]) >= 0)
    assert rashomon_curve(preds, scores, epsilon=0)["at_epsilon"]["n_runs"] == 2
    with pytest.raises(ValueError, match="one per run"):
        rashomon_curve(preds, scores[:3])


def test_churn_between_two_models_runs():
    """Churn of independent runs: q_A (1 - q_B) + q_B (1 - q_A) per instance; equal to the brute-force mean over
    every cross pair; the matrix holds each model's PD on its diagonal."""
    gen = np.random.default_rng(3)
    qa, qb = gen.uniform(0, 0.4, M), gen.uniform(0, 0.4, M)
    base = gen.integers(0, 2, M)
    pa, _ = flipped(gen, qa, n=6, base=base)
    pb, _ = flipped(gen, qb, n=9, base=base)
    c = churn(pa, pb)
    brute = np.mean([np.mean(x != y) for x in pa for y in pb])
    assert c == pytest.approx(brute, abs=1e-12)
    truth = qa * (1 - qb) + qb * (1 - qa)
    assert abs(c - truth.mean()) < 4 * np.sqrt(truth.var() / M + 0.25 / (M * 6))
    mat = churn_matrix({"a": pa, "b": pb, "one": pa[:1]})
    assert mat["names"] == ["a", "b", "one"] and mat["matrix"][0][1] == pytest.approx(c)
    assert mat["matrix"][0][0] == pytest.approx(pairwise_disagreement(pa)) and mat["matrix"][2][2] is None


def test_most_flipping_orders_by_flip_rate_then_disagreement():
    preds = np.array([[0, 0, 1, 2, 1], [0, 1, 1, 0, 1], [0, 1, 0, 1, 1], [0, 1, 1, 2, 1]])
    res = flip_rates(preds, n_classes=3)
    # instance 3 (labels 2, 0, 1, 2): flip 0.5; instances 1 and 2: 0.25; 0 and 4 unanimous (left out)
    assert most_flipping(res, top=10) == [3, 1, 2]
    assert most_flipping(res, top=1) == [3]
