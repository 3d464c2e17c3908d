"""Comparing mitigation methods (Du & Nguyen 2023) on simulated runs with known instability."""

import json

import numpy as np
import pytest

from seedlab.stats import method_comparison as mt
from seedlab.stats.agreement import instability_measures
from seedlab.stats.design import RunTable

# per method: mean per-instance accuracy q (higher q = fewer disagreements) and number of runs
SPEC = {"stable": (0.95, 12), "standard": (0.8, 8), "unstable": (0.6, 9)}


def _instance_q(rng, q, m):
    return rng.beta(20 * q, 20 * (1 - q), size=m)


def _table(seed=0, m=300, spec=SPEC, n_classes=2):
    """Independent runs; run of method j is correct on instance k with probability q_jk.

    Binary: two runs disagree iff exactly one is correct, so the true PD is mean_k 2 q_k (1 - q_k)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, m)
    rows = {"model": [], "method": [], "p": [], "f": [], "preds": [], "probs": []}
    truth = {}
    for name, (q, n) in spec.items():
        qk = _instance_q(rng, q, m)
        truth[name] = float(np.mean(2 * qk * (1 - qk)))
        for r in range(n):
            correct = rng.random(m) < qk
            wrong = (labels + rng.integers(1, n_classes, m)) % n_classes
            pred = np.where(correct, labels, wrong)
            conf = 0.5 + 0.5 * rng.random(m)
            probs = np.full((m, n_classes), (1 - conf)[:, None] / (n_classes - 1))
            probs[np.arange(m), pred] = conf
            # seeds listed in reverse so the deterministic selection must sort them
            rows["model"].append("bert")
            rows["method"].append(name)
            rows["p"].append((n - 1 - r) // 4)
            rows["f"].append((n - 1 - r) % 4)
            rows["preds"].append(pred)
            rows["probs"].append(probs)
    table = RunTable.from_arrays(
        "sim", labels, rows["model"], rows["p"], rows["f"], np.stack(rows["preds"]), probs=np.stack(rows["probs"]),
        method=rows["method"])
    return table, truth


@pytest.fixture(scope="module")
def comparison():
    table, truth = _table()
    return table, truth, mt.compare_methods(table, n_bootstrap=500, rng=1)


def test_equal_seed_counts_and_point_values(comparison):
    table, truth, res = comparison
    assert res.k == 8 and res.n_available == {"stable": 12, "standard": 8, "unstable": 9}
    # the first 8 runs by (pretrain_seed, finetune_seed): seeds (0,0)..(1,3); dropped (2,0)..(2,3)
    assert [(d["pretrain_seed"], d["finetune_seed"]) for d in res.dropped["stable"]] == [(2, 0), (2, 1), (2, 2), (2, 3)]
    assert [(d["pretrain_seed"], d["finetune_seed"]) for d in res.dropped["unstable"]] == [(2, 0)]
    assert res.dropped["standard"] == []
    sel = [(d["pretrain_seed"], d["finetune_seed"]) for d in res.selected["stable"]]
    assert sel == sorted(sel) and len(sel) == 8
    for me in res.methods:
        ids = [d["run_id"] for d in res.selected[me]]
        rows = np.array([np.flatnonzero(table.run_ids == i)[0] for i in ids])
        acc = (table.predictions[rows] == table.labels).mean(axis=1)
        ref = instability_measures(table.predictions[rows], table.probs[rows], acc)
        for ms in res.measures:
            assert res.values[me][ms] == pytest.approx(ref[ms], abs=1e-12)
        assert abs(res.values[me]["pd"] - truth[me]) < 0.03  # PD estimates the known pairwise disagreement


def test_rankings_agree_and_stable_ranks_first(comparison):
    _, _, res = comparison
    assert res.measures == ("sd", "pd", "jsd", "one_minus_fleiss_kappa")
    prediction_level = ("pd", "jsd", "one_minus_fleiss_kappa")
    for ms in prediction_level:  # these separate the methods in (practically) every replicate
        assert res.ranks[ms] == {"stable": 1.0, "standard": 2.0, "unstable": 3.0}, ms
        assert res.share_first[ms]["stable"] > 0.99, (ms, res.share_first[ms])
    # the SD of 8 accuracies is far noisier: its ranking is not asserted (it differs for other simulation
    # seeds), only that its bootstrap shares are a distribution
    for ms in res.measures:
        assert sum(res.share_first[ms].values()) == pytest.approx(1.0)
    names = res.ranking_agreement["measures"]
    tau = np.array(res.ranking_agreement["tau"])
    idx = [names.index(ms) for ms in prediction_level]
    assert np.allclose(tau[np.ix_(idx, idx)], 1.0)
    assert np.all(np.abs(tau) <= 1.0) and len(res.ranking_agreement["pairs"]) == 6
    d = json.loads(json.dumps(res.as_dict()))
    assert d["estimator"].startswith("Du & Nguyen") and d["bootstrap"]["scheme"] == "exclude_self_pairs"
    assert d["bootstrap"]["intervals"]["stable"]["pd"]["ci_low"] <= d["values"]["stable"]["pd"]


def test_unit_weights_reproduce_point_values():
    table, _ = _table(seed=2, m=120, n_classes=3, spec={"a": (0.7, 5), "b": (0.5, 5)})
    preds, probs = table.predictions[:5], table.probs[:5]
    acc = (preds == table.labels).mean(axis=1)
    s = mt.pair_summaries(preds, probs, acc)
    for ddof in (0, 1):
        ref = instability_measures(preds, probs, acc, ddof=ddof)
        for ex in (True, False):
            got = mt.weighted_measures(s, np.ones(5), ddof=ddof, exclude_self_pairs=ex)
            for ms in ("sd", "pd", "jsd", "one_minus_fleiss_kappa"):
                assert got[ms][0] == pytest.approx(ref[ms], abs=1e-12), (ms, ex, ddof)
    # a run drawn k times alone is undefined without self-pairs (no pair of distinct runs)
    one = mt.weighted_measures(s, np.array([5.0, 0, 0, 0, 0]))
    assert np.isnan(one["pd"][0]) and np.isnan(one["one_minus_fleiss_kappa"][0])


def test_bootstrap_not_biased_by_self_pairs_naive_is():
    """Mean of the bootstrap distribution of PD (and JSD, SD^2) vs the point value, k = 6 runs."""
    table, _ = _table(seed=3, m=200, spec={"a": (0.75, 6), "b": (0.9, 6)})
    good = mt.compare_methods(table, n_bootstrap=4000, rng=0)
    naive = mt.compare_methods(table, n_bootstrap=4000, rng=0, bootstrap="with_self_pairs")
    k = 6
    for me in ("a", "b"):
        for ms in ("pd", "jsd"):
            pt = good.values[me][ms]
            assert good.samples[me][ms][~np.isnan(good.samples[me][ms])].mean() / pt == pytest.approx(1.0, abs=0.015)
            ratio = naive.samples[me][ms].mean() / pt
            assert ratio == pytest.approx(1 - 1 / k, abs=0.015)  # self-pairs drag it down by ~1/k
            assert naive.intervals[me][ms]["ci_high"] < pt * 1.1
        # the variance behind the SD behaves the same way
        pt2 = good.values[me]["sd"] ** 2
        assert np.nanmean(good.samples[me]["sd"] ** 2) / pt2 == pytest.approx(1.0, abs=0.03)
        assert np.mean(naive.samples[me]["sd"] ** 2) / pt2 == pytest.approx(1 - 1 / k, abs=0.03)


def test_bootstrap_interval_covers_true_pd_naive_does_not():
    """300 experiments of k = 10 independent runs on fixed instances with known PD; 95% percentile intervals."""
    rng = np.random.default_rng(0)
    m, k, R, B = 200, 10, 300, 400
    q = _instance_q(rng, 0.8, m)
    truth = np.mean(2 * q * (1 - q))
    labels = rng.integers(0, 2, m)
    cover = {True: 0, False: 0}
    for _ in range(R):
        preds = np.where(rng.random((k, m)) < q, labels, 1 - labels)
        s = mt.pair_summaries(preds)
        w = np.zeros((B, k))
        np.add.at(w, (np.arange(B)[:, None], rng.integers(0, k, (B, k))), 1.0)
        for ex in cover:
            rep = mt.weighted_measures(s, w, exclude_self_pairs=ex)["pd"]
            lo, hi = np.percentile(rep[~np.isnan(rep)], [2.5, 97.5])
            cover[ex] += lo <= truth <= hi
    assert 0.88 <= cover[True] / R <= 0.99, cover
    assert cover[False] / R < 0.6, cover


def test_reproducible_and_two_methods_note():
    table, _ = _table(seed=4, m=50, spec={"a": (0.7, 4), "b": (0.8, 5)})
    r1 = mt.compare_methods(table, n_bootstrap=200, rng=7)
    r2 = mt.compare_methods(table, n_bootstrap=200, rng=7)
    assert r1.intervals == r2.intervals and r1.share_first == r2.share_first
    assert any("two methods" in n for n in r1.notes)
    no_boot = mt.compare_methods(table, n_bootstrap=0)
    assert no_boot.intervals == {} and no_boot.share_first == {}


def test_validation():
    table, _ = _table(seed=5, m=30, spec={"a": (0.7, 4), "b": (0.8, 2)})
    with pytest.raises(ValueError, match="needs >= 3 runs"):
        mt.compare_methods(table)
    assert mt.compare_methods(table, n_bootstrap=0).k == 2
    one = table.subset(method="a")
    with pytest.raises(ValueError, match="one method only"):
        mt.compare_methods(one)
    with pytest.raises(ValueError, match="unknown model"):
        mt.compare_methods(table, model="gpt", n_bootstrap=0)
    with pytest.raises(ValueError, match="bootstrap must be"):
        mt.compare_methods(table, bootstrap="naive")
    with pytest.raises(ValueError, match="unknown metric"):
        mt.compare_methods(table, metric="bleu", n_bootstrap=0)
    reg = RunTable.from_arrays("r", np.zeros(3), ["x"] * 2, [0, 0], [0, 1], np.zeros((2, 3)), is_regression=True,
                               method=["a", "b"])
    with pytest.raises(ValueError, match="regression"):
        mt.compare_methods(reg)
