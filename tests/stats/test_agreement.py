"""Agreement measures against brute-force pair loops and statsmodels."""

import itertools

import numpy as np
import pytest

from seedlab.stats import agreement as ag

inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")


def _random_runs(seed, n=6, m=40, c=3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, c, m)
    preds = np.where(rng.random((n, m)) < 0.6, truth, rng.integers(0, c, (n, m)))
    logits = rng.normal(size=(n, m, c))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    probs[0, :5] = 0.0  # exact zeros must be handled (0 log 0 = 0)
    probs[0, :5, 0] = 1.0
    return preds, probs


def _brute(preds, probs):
    n, m = preds.shape
    pairs = list(itertools.combinations(range(n), 2))
    pd = np.mean([np.mean(preds[i] != preds[j]) for i, j in pairs])
    cons = np.mean([len(set(preds[:, k])) == 1 for k in range(m)])

    def kl(p, q):
        return sum(pi * np.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)

    def jsd(p, q):
        mix = (p + q) / 2
        return kl(p, mix) / 2 + kl(q, mix) / 2

    js = np.mean([np.mean([jsd(probs[i, k], probs[j, k]) for k in range(m)]) for i, j in pairs])
    return pd, cons, js


@pytest.mark.parametrize("seed,c", [(0, 2), (1, 3), (2, 5)])
def test_pd_consistency_jsd_match_brute_force(seed, c):
    preds, probs = _random_runs(seed, c=c)
    pd, cons, js = _brute(preds, probs)
    assert ag.pairwise_disagreement(preds) == pytest.approx(pd, abs=1e-12)
    assert ag.agreement_pairwise(preds) == pytest.approx(1 - pd, abs=1e-12)
    assert ag.consistency_all(preds) == pytest.approx(cons, abs=1e-12)
    assert ag.mean_pairwise_jsd(probs) == pytest.approx(js, abs=1e-10)


@pytest.mark.parametrize("seed,c", [(0, 2), (1, 3), (2, 4), (3, 7)])
def test_fleiss_kappa_equals_statsmodels(seed, c):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(2, 12)), int(rng.integers(5, 80))
    truth = rng.integers(0, c, m)
    preds = np.where(rng.random((n, m)) < 0.5, truth, rng.integers(0, c, (n, m)))
    table = ag.label_counts(preds)
    ref = inter_rater.fleiss_kappa(table, method="fleiss")
    assert ag.fleiss_kappa(preds) == pytest.approx(ref, abs=1e-12)
    # string labels and unused classes do not matter
    assert ag.fleiss_kappa(np.array(["abcdefg"[v] for v in preds.ravel()]).reshape(n, m)) == pytest.approx(ref, abs=1e-12)
    assert ag.fleiss_kappa(preds, n_classes=c + 3) == pytest.approx(ref, abs=1e-12)


def test_fleiss_degenerate_and_perfect():
    same = np.zeros((4, 10), dtype=int)
    assert ag.fleiss_kappa(same) == 1.0  # documented choice: all runs always predict one class
    agree = np.tile(np.arange(10) % 2, (4, 1))
    assert ag.fleiss_kappa(agree) == pytest.approx(1.0)
    m = ag.instability_measures(agree)
    assert m["pd"] == 0 and m["one_minus_fleiss_kappa"] == pytest.approx(0.0) and m["consistency_all"] == 1.0


def test_jsd_at_many_runs_equals_a_pair_loop_and_never_holds_all_pairs():
    """At 50 runs (1225 pairs) the entropy identity H(M) - (H(p) + H(q))/2, summed over pairs, still equals
    scipy's per-pair Jensen-Shannon distance squared; and at 10k instances the computation never holds more
    than a few copies of the input, where all pairs at once would be n(n-1)/2 / n = 24.5 copies. (Its speed
    is measured in benchmarks/bench_analyze.py, not asserted here.)"""
    import tracemalloc

    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(50, 10_000))
    few = probs[:, :300]
    pairs = itertools.combinations(range(len(few)), 2)
    loop = np.mean([jensenshannon(few[i], few[j], axis=-1) ** 2 for i, j in pairs], axis=0)
    np.testing.assert_allclose(ag.pairwise_jsd_per_instance(few), loop, rtol=0, atol=1e-12)
    assert ag.mean_pairwise_jsd(few) == pytest.approx(loop.mean(), abs=1e-12)

    tracemalloc.start()
    try:
        value = ag.mean_pairwise_jsd(probs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * probs.nbytes, peak / probs.nbytes
    assert 0 < value < np.log(2)


def test_instability_measures_and_summary():
    preds, probs = _random_runs(3)
    vals = np.array([0.7, 0.72, 0.69, 0.75, 0.71, 0.7])
    out = ag.instability_measures(preds, probs, metric_values=vals)
    assert out["sd"] == pytest.approx(np.std(vals)) and out["ddof"] == 0 and out["n_runs"] == 6
    assert out["pd"] == pytest.approx(1 - out["agreement_pairwise"])
    assert out["jsd"] == pytest.approx(ag.mean_pairwise_jsd(probs))
    assert ag.instability_measures(preds)["jsd"] is None
    s = ag.summarize_metric(vals, ddof=1)
    assert s == {"n": 6, "mean": pytest.approx(vals.mean()), "sd": pytest.approx(vals.std(ddof=1)), "ddof": 1,
                 "min": 0.69, "max": 0.75}


def test_validation():
    with pytest.raises(ValueError, match="at least 2 runs"):
        ag.pairwise_disagreement(np.zeros((1, 5), int))
    with pytest.raises(ValueError, match="2-D"):
        ag.consistency_all(np.zeros(5))
    with pytest.raises(ValueError, match="sum to 1"):
        ag.mean_pairwise_jsd(np.full((2, 3, 2), 0.7))
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        ag.fleiss_kappa(np.array([[0, 2], [1, 1]]), n_classes=2)
    with pytest.raises(ValueError, match="one value per run"):
        ag.instability_measures(np.zeros((3, 4), int), metric_values=[1, 2])
    with pytest.raises(ValueError, match="ddof"):
        ag.summarize_metric([1.0], ddof=1)


def test_subsample_insensitivity_and_measure_agreement():
    preds, probs = _random_runs(4, n=8, m=400)
    labels = np.random.default_rng(4).integers(0, 3, 400)
    res = ag.subsample_insensitivity(preds, probs, fractions=(0.1, 0.5), n_subsamples=5, rng=0, labels=labels)
    assert set(res["fractions"]) == {0.1, 0.5}
    for meas in ("pd", "jsd", "one_minus_fleiss_kappa", "consistency_all", "sd"):
        full = res["full"][meas]
        half = res["fractions"][0.5][meas]
        assert len(half["values"]) == 5
        # PD, JSD, kappa are means over instances: the subset mean stays close to the full value
        if meas in ("pd", "jsd", "one_minus_fleiss_kappa"):
            assert abs(half["mean"] - full) < 0.05
    assert res["fractions"][0.1]["pd"]["sd"] > res["fractions"][0.5]["pd"]["sd"]
    # reproducible
    again = ag.subsample_insensitivity(preds, probs, fractions=(0.1, 0.5), n_subsamples=5, rng=0, labels=labels)
    assert again["fractions"][0.1]["pd"]["values"] == res["fractions"][0.1]["pd"]["values"]

    layers = np.arange(12, dtype=float)
    curves = {"pd": layers, "jsd": layers**2, "cka": -layers, "flat": np.ones(12)}
    agr = ag.measure_agreement(curves)
    i, j = agr["names"].index("pd"), agr["names"].index("jsd")
    assert agr["spearman"][i, j] == pytest.approx(1.0)
    assert agr["pearson"][i, agr["names"].index("cka")] == pytest.approx(-1.0)
    assert np.isnan(agr["pearson"][i, agr["names"].index("flat")])
    with pytest.raises(ValueError, match="same length"):
        ag.measure_agreement({"a": [1, 2, 3], "b": [1, 2]})

    rk = ag.ranking_agreement({"pd": {"std": 3, "mixout": 1, "llrd": 2}, "jsd": {"std": 0.3, "mixout": 0.1, "llrd": 0.2}})
    assert rk["tau"][0, 1] == pytest.approx(1.0)
