"""Multi-Bootstrap: equal to the loop reference, calibrated on simulations with a known truth."""

import numpy as np
import pytest
from scipy.stats import kstest

from seedlab.stats.multibootstrap import multibootstrap
from seedlab.stats.simulate import population_accuracy, simulate_experiment

import loop_reference  # tests/stats/loop_reference.py, beside this file (pytest puts this folder on sys.path)


def _arms(seed, m=200, n_classes=2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, m)
    pb = np.where(rng.random((12, m)) < 0.65, y, (y + 1) % n_classes)
    pi = np.where(rng.random((10, m)) < 0.7, y, (y + 1) % n_classes)
    sb = np.repeat([3, 1, 2, 0], 3)
    si = np.array([0, 0, 1, 1, 2, 2, 5, 5, 4, 4])
    return y, pb, sb, pi, si


@pytest.mark.parametrize("score", ["accuracy", "f1", "mcc", "pearson", "spearman", "callable"])
@pytest.mark.parametrize("paired", [True, False])
def test_equal_to_loop_reference(score, paired):
    y, pb, sb, pi, si = _arms(0, n_classes=3 if score == "mcc" else 2)
    if score in ("pearson", "spearman"):
        rng = np.random.default_rng(1)
        y = rng.normal(size=200)
        pb = y + rng.normal(size=pb.shape)
        pi = y + 0.7 * rng.normal(size=pi.shape)
    fn = (lambda a, b: float(np.mean(a == b))) if score == "callable" else score
    for rs, rx in [(True, True), (True, False), (False, True)]:
        # a small max_chunk_elements forces several chunks: the stream must not depend on chunking
        v = multibootstrap(y, pb, sb, pi, si, score=fn, n_bootstrap=30, paired=paired, resample_seeds=rs,
                           resample_examples=rx, rng=4, max_chunk_elements=7 * 200)
        ref = loop_reference.multibootstrap_loop(y, pb, sb, pi, si, score=fn, n_bootstrap=30, paired=paired,
                                                 resample_seeds=rs, resample_examples=rx, rng=4)
        assert np.allclose(v.samples, ref, rtol=0, atol=1e-12)
    single = multibootstrap(y, pb, sb, score=fn, n_bootstrap=20, rng=2)
    assert np.allclose(single.samples, loop_reference.multibootstrap_loop(y, pb, sb, score=fn, n_bootstrap=20, rng=2),
                       rtol=0, atol=1e-12)


def test_int32_draws_match_documented_int64_stream():
    for m in (7, 1000, 65_537, 3_000_001):
        a = np.random.Generator(np.random.PCG64(5)).integers(0, m, size=(3, 50))
        b = np.random.Generator(np.random.PCG64(5)).integers(0, m, size=(3, 50), dtype=np.int32)
        assert np.array_equal(a, b)


def test_reproducible_and_settings():
    y, pb, sb, pi, si = _arms(2)
    r1 = multibootstrap(y, pb, sb, pi, si, n_bootstrap=100, paired=True, rng=9, threshold=0.01)
    r2 = multibootstrap(y, pb, sb, pi, si, n_bootstrap=100, paired=True, rng=9, threshold=0.01)
    r3 = multibootstrap(y, pb, sb, pi, si, n_bootstrap=100, paired=True, rng=10, threshold=0.01)
    assert np.array_equal(r1.samples, r2.samples) and r1.as_dict() == r2.as_dict()
    assert not np.array_equal(r1.samples, r3.samples)
    # paired: only the common seeds 0, 1, 2 are used; 3 (baseline) and 4, 5 (intervention) are dropped
    assert r1.settings["seeds_baseline"] == [0, 1, 2] == r1.settings["seeds_intervention"]
    assert r1.settings["dropped_seeds_baseline"] == [3] and r1.settings["dropped_seeds_intervention"] == [4, 5]
    assert r1.settings["n_runs_intervention"] == 6 and r1.settings["n_runs_baseline"] == 9
    assert r1.p_value >= 1 / 100 and 0 <= r1.p_threshold <= 1
    d = r1.samples[:, 1] - r1.samples[:, 0]
    assert r1.p_threshold == pytest.approx(np.mean(d >= 0.01))
    assert r1.delta.ci_low == pytest.approx(np.quantile(d, 0.025))
    # point estimates on the full data
    acc = (pb == y).mean(axis=1)
    assert r1.baseline.point == pytest.approx(np.mean([acc[sb == s].mean() for s in range(3)]))
    # p-value floored at 1/B
    big = multibootstrap(y, pb, sb, np.tile(y, (10, 1)), si, n_bootstrap=50, paired=True, rng=0)
    assert big.p_value == pytest.approx(1 / 50)
    single = multibootstrap(y, pb, sb, n_bootstrap=50)
    assert single.intervention is None and single.delta is None and single.p_value is None


def test_validation():
    y, pb, sb, pi, si = _arms(3)
    with pytest.raises(ValueError, match="unknown metric"):
        multibootstrap(y, pb, sb, pi, si, score="auc")
    with pytest.raises(ValueError, match="one pretraining seed per run"):
        multibootstrap(y, pb, sb[:-1])
    with pytest.raises(ValueError, match="shape"):
        multibootstrap(y[:-1], pb, sb)
    with pytest.raises(ValueError, match="share no pretraining seed"):
        multibootstrap(y, pb, sb, pi, si + 100, paired=True)
    with pytest.raises(ValueError, match="at least one of"):
        multibootstrap(y, pb, sb, resample_seeds=False, resample_examples=False)
    with pytest.raises(ValueError, match="both preds_intervention and seeds_intervention"):
        multibootstrap(y, pb, sb, pi)
    with pytest.raises(ValueError, match="threshold needs an intervention"):
        multibootstrap(y, pb, sb, threshold=0.1)


# --------------------------------------------------------------------------------------------------
# calibration on simulations with a known population truth
# --------------------------------------------------------------------------------------------------

ABILITY = {"null": (0.3, 0.3), "effect": (0.3, 0.5)}
SD = dict(difficulty=1.0, pretrain=0.4, finetune=0.5)
POPULATION = dict(difficulty_mean=0.0, difficulty_sd=SD["difficulty"], pretrain_sd=SD["pretrain"],
                  finetune_sd=SD["finetune"])


def _simulated_arms(seed, ability, m=150, P=10, F=2, pretrain_shared=0.2):
    """Two arms on the same instances; arms share pretraining seeds (correlated effects, paired design);
    20% of the pretraining-effect variance is a seed main effect (a seed is better or worse overall)."""
    table, _ = simulate_experiment(
        n_models=2, model_names=["base", "int"], P=P, F=F, m=m, difficulty=(0.0, SD["difficulty"]),
        ability=list(ability), pretrain_sd=SD["pretrain"], finetune_sd=SD["finetune"], decaying_fraction=0.0,
        pretrain_corr=0.5, pretrain_shared=pretrain_shared, rng=seed,
    )
    b, i = table.subset(model="base"), table.subset(model="int")
    return table.labels, b.predictions, b.pretrain_seed, i.predictions, i.pretrain_seed


@pytest.fixture(scope="module")
def calibration():
    out = {}
    for case, ab in ABILITY.items():
        pop = population_accuracy(np.array(ab), **POPULATION)
        true_delta = float(pop[1] - pop[0])
        cover, cover_base, pvals = [], [], []
        for sim in range(300):
            y, pb, sb, pi, si = _simulated_arms(1000 * (case == "effect") + sim, ab)
            r = multibootstrap(y, pb, sb, pi, si, n_bootstrap=200, paired=True, rng=sim)
            cover.append(r.delta.ci_low <= true_delta <= r.delta.ci_high)
            cover_base.append(r.baseline.ci_low <= pop[0] <= r.baseline.ci_high)
            pvals.append(r.p_value)
        out[case] = dict(cover=np.mean(cover), cover_base=np.mean(cover_base), p=np.array(pvals), delta=true_delta)
    return out


def test_ci_coverage(calibration):
    for case in ABILITY:
        assert 0.90 <= calibration[case]["cover"] <= 0.99, (case, calibration[case]["cover"])
        assert 0.90 <= calibration[case]["cover_base"] <= 0.99, (case, calibration[case]["cover_base"])
    assert calibration["effect"]["delta"] > 0.04


def test_pvalues_uniform_under_null_and_small_under_effect(calibration):
    p = calibration["null"]["p"]
    assert kstest(p, "uniform").pvalue > 0.01
    counts, _ = np.histogram(p, bins=5, range=(0, 1))
    assert counts.min() >= 40  # 60 expected per bin
    assert np.mean(calibration["effect"]["p"] <= 0.05) > 0.5  # power


def test_single_source_switches_give_narrower_cis():
    widths = {"both": [], "seeds": [], "examples": []}
    for sim in range(5):
        y, pb, sb, pi, si = _simulated_arms(500 + sim, ABILITY["effect"])
        for key, rs, rx in (("both", True, True), ("seeds", True, False), ("examples", False, True)):
            r = multibootstrap(y, pb, sb, pi, si, n_bootstrap=300, paired=True, rng=sim, resample_seeds=rs,
                               resample_examples=rx)
            widths[key].append(r.delta.ci_high - r.delta.ci_low)
    w = {k: np.array(v) for k, v in widths.items()}
    assert np.all(w["seeds"] < w["both"]) and np.all(w["examples"] < w["both"])


def test_conservative_when_noise_is_instance_specific():
    """Without any seed main effect the seed x instance interaction dominates the variance of delta, and the
    two-way resampling counts it more than once (McCullagh 2000): the Multi-Bootstrap is then conservative.
    Documented here so the behaviour is known, not a target."""
    pop = population_accuracy(np.array(ABILITY["null"]), **POPULATION)
    cover = []
    for sim in range(100):
        y, pb, sb, pi, si = _simulated_arms(3000 + sim, ABILITY["null"], pretrain_shared=0.0)
        r = multibootstrap(y, pb, sb, pi, si, n_bootstrap=200, paired=True, rng=sim)
        cover.append(r.delta.ci_low <= pop[1] - pop[0] <= r.delta.ci_high)
    assert np.mean(cover) >= 0.98
