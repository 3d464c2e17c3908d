"""Zhong et al. 2021 estimators against the exact truths of the simulation."""

import numpy as np
import pytest
from scipy.stats import fisher_exact

from seedlab.stats import zhong
from seedlab.stats.simulate import exact_components, make_truth, sample_correctness, simulate_experiment


def _within_mc_error(estimates: np.ndarray, truth: float, z: float = 4.0) -> bool:
    """|mean - truth| < z * SE over independent replicate experiments."""
    se = estimates.std(ddof=1) / np.sqrt(estimates.shape[0])
    return bool(abs(estimates.mean() - truth) < z * se)


# --------------------------------------------------------------------------------------------------
# simulation truths are exact
# --------------------------------------------------------------------------------------------------


def test_exact_components_match_monte_carlo():
    rng = np.random.default_rng(0)
    mu = np.array([-1.0, -0.2, 0.0, 0.4, 1.5])
    sp, sf = 0.7, 0.9
    comp = exact_components(mu, sp, sf)
    P = 40_000
    u = sp * rng.standard_normal((P, 1, 5))
    c = (mu + u + sf * rng.standard_normal((P, 2, 5)) > 0).astype(float)
    acc = c.mean(axis=(0, 1))
    both = (c[:, 0] * c[:, 1]).mean(axis=0)  # E_p[g^2]
    se = np.sqrt(0.25 / P)
    assert np.all(np.abs(acc - comp["acc"]) < 5 * se)
    assert np.all(np.abs(both - (comp["pretrain_var"] + comp["acc"] ** 2)) < 5 * se)
    assert np.allclose(comp["bias2"] + comp["pretrain_var"] + comp["finetune_var"], comp["loss"])
    # limits: no pretraining noise -> no PretVar; no fine-tuning noise -> no FineVar
    assert np.allclose(exact_components(mu, 0.0, 1.0)["pretrain_var"], 0, atol=1e-15)
    assert np.allclose(exact_components(mu, 1.0, 0.0)["finetune_var"], 0, atol=1e-15)


# --------------------------------------------------------------------------------------------------
# (a) noise decomposition is unbiased; the naive plug-in is not
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decomposition_runs():
    rng = np.random.default_rng(11)
    m, P, F, R = 60, 4, 3, 400
    truth = make_truth(["base"], rng.normal(0.0, 1.0, m), ability=[0.3], pretrain_sd=0.5, finetune_sd=0.9)
    C = sample_correctness(truth, P=P, F=F, rng=rng, n_experiments=R)[:, 0].astype(float)  # (R, P, F, m)
    per = {k: np.empty((R, m)) for k in ("pretrain_var", "finetune_var", "bias2")}
    naive = {k: np.empty((R, m)) for k in ("pretrain_var", "finetune_var", "bias2")}
    for r in range(R):
        nd = zhong.noise_decomposition(C[r])
        for k in per:
            per[k][r] = getattr(nd, k)
        mu_p = C[r].mean(axis=1)
        naive["pretrain_var"][r] = mu_p.var(axis=0)  # plug-in: spread of seed means (ddof=0)
        naive["finetune_var"][r] = C[r].var(axis=1).mean(axis=0)  # plug-in within-seed variance (ddof=0)
        naive["bias2"][r] = (1.0 - C[r].mean(axis=(0, 1))) ** 2  # squaring a mean
    return truth, per, naive


@pytest.mark.parametrize("component", ["pretrain_var", "finetune_var", "bias2"])
def test_noise_decomposition_unbiased(decomposition_runs, component):
    truth, per, naive = decomposition_runs
    true_k = getattr(truth, component)[0]  # (m,)
    # aggregate over instances (what the paper reports)
    assert _within_mc_error(per[component].mean(axis=1), float(true_k.mean()))
    # and instance by instance, where the estimator is not too skewed for a 400-replicate SE
    # (near acc = 0 or 1 rare seeds dominate; checked separately with 400k replicates: unbiased)
    mid = (truth.acc[0] > 0.1) & (truth.acc[0] < 0.9)
    assert mid.sum() >= 20
    est = per[component][:, mid]
    z = (est.mean(axis=0) - true_k[mid]) / (est.std(axis=0, ddof=1) / np.sqrt(est.shape[0]))
    assert np.max(np.abs(z)) < 4.5
    # the test has teeth: the naive plug-in estimator fails it
    assert not _within_mc_error(naive[component].mean(axis=1), float(true_k.mean()))


def test_noise_decomposition_outputs():
    table, truth = simulate_experiment(n_models=1, P=3, F=4, m=150, rng=2)
    c = table.grid("s0").correct
    nd = zhong.noise_decomposition(c, bucket_by="accuracy", bucket_width=0.25)
    assert np.allclose(nd.loss, nd.bias2 + nd.pretrain_var + nd.finetune_var)
    assert np.allclose(nd.accuracy, zhong.instance_accuracy(c))
    assert np.allclose(nd.loss, 1 - nd.accuracy)
    assert len(nd.conditioned) == 4 and sum(b["n"] for b in nd.conditioned) == 150
    assert nd.means["loss"] == pytest.approx(nd.loss.mean())
    assert (nd.P, nd.F) == (3, 4)


# --------------------------------------------------------------------------------------------------
# (b) decaying instances: lower bound
# --------------------------------------------------------------------------------------------------


def test_decay_lower_bound_is_a_lower_bound():
    rng = np.random.default_rng(5)
    m, P, F, R = 400, 6, 3, 60
    dec = np.zeros(m, dtype=bool)
    dec[rng.choice(m, 40, replace=False)] = True
    truth = make_truth(["mini", "large"], rng.normal(0, 1, m), ability=[0.0, 0.6], pretrain_sd=0.4, finetune_sd=0.6,
                       decaying=dec, decay_margin=1.5)
    true_decay = truth.decay_fraction[("mini", "large")]
    assert true_decay == pytest.approx(0.1)
    C = sample_correctness(truth, P=P, F=F, rng=rng, n_experiments=R).astype(float)
    est, raw, bias, bh = [], [], [], []
    for r in range(R):
        res = zhong.decay_lower_bound(C[r, 0], C[r, 1], n_bootstrap=100, rng=r)
        est.append(res.estimate)
        raw.append(res.max_difference)
        bias.append(res.bias)
        bh.append(zhong.fisher_bh_decay(C[r, 0], C[r, 1])["fraction"])
    est, raw, bias, bh = map(np.asarray, (est, raw, bias, bh))
    assert np.mean(est <= true_decay) >= 0.95
    assert np.mean(raw <= true_decay) >= 0.95
    assert np.mean(bias) > 0  # the max is biased upward and the correction lowers it
    assert np.mean(est) > 0.02  # informative, not trivially 0
    assert np.mean(bh <= true_decay) >= 0.95  # the naive alternative is no better here (FDR control only)


def test_decay_lower_bound_tight_when_noise_small():
    m = 500
    rng = np.random.default_rng(6)
    dec = np.zeros(m, dtype=bool)
    dec[rng.choice(m, 50, replace=False)] = True
    # constant difficulty: decaying instances go from mu=+0.5 (mini) to mu=-0.5 (large); others improve
    truth = make_truth(["mini", "large"], np.full(m, -0.5), ability=[0.0, 1.0], pretrain_sd=0.05, finetune_sd=0.05,
                       decaying=dec, decay_margin=1.0)
    assert truth.decay_fraction[("mini", "large")] == pytest.approx(0.1)
    C = sample_correctness(truth, P=4, F=2, rng=rng).astype(float)
    res = zhong.decay_lower_bound(C[0], C[1], n_bootstrap=200, rng=0)
    assert res.max_difference == pytest.approx(0.1)
    assert abs(res.lower_bound - 0.1) < 0.01
    assert res.t[0] == -1.0 and res.t[-1] == pytest.approx(-0.01) and res.t.shape == (100,)
    assert "nested" in res.caveat
    assert np.allclose(res.difference, res.decay_hat - res.decay_baseline)


def test_decay_curves_by_hand_and_shapes():
    rng = np.random.default_rng(8)
    c1 = (rng.random((4, 2, 30)) < 0.6).astype(float)
    c2 = (rng.random((3, 1, 30)) < 0.7).astype(float)  # different shapes, P odd, F = 1
    res = zhong.decay_lower_bound(c1, c2, n_bootstrap=20, rng=0)
    dhat = c2.mean(axis=(0, 1)) - c1.mean(axis=(0, 1))
    a1, b1 = c1[:2].mean(axis=(0, 1)), c1[2:].mean(axis=(0, 1))
    a2, b2 = c2[:1].mean(axis=(0, 1)), c2[1:].mean(axis=(0, 1))
    dprime = (a1 + a2) / 2 - (b1 + b2) / 2
    assert np.allclose(res.dhat, dhat) and np.allclose(res.dprime, dprime)
    for j in (0, 37, 60, 99):
        t = res.t[j]
        assert res.decay_hat[j] == pytest.approx(np.mean(dhat <= t + 1e-9))
        assert res.decay_baseline[j] == pytest.approx(np.mean(dprime <= t + 1e-9))
    assert res.split["c2"] == {"split_by": "pretraining seed", "half_a": [0], "half_b": [1, 2]}
    assert res.caveat is not None and "nested" in res.caveat  # c1 is nested
    single = zhong.decay_lower_bound(c1[:1], c2, n_bootstrap=5, rng=0)
    assert single.split["c1"]["split_by"] == "fine-tuning run" and "c1 has a single pretraining seed" in single.caveat
    named = zhong.decay_lower_bound(c1[:1], c2, n_bootstrap=5, rng=0, names=("minilm", "minilm+mlm"))
    assert "minilm has a single pretraining seed" in named.caveat and "c1" not in named.caveat
    # reproducible
    assert zhong.decay_lower_bound(c1, c2, n_bootstrap=20, rng=0).estimate == res.estimate


def test_fisher_bh_matches_loop():
    statsmodels_mt = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(9)
    c1 = (rng.random((5, 4, 80)) < rng.random(80)).astype(float)
    c2 = (rng.random((5, 2, 80)) < rng.random(80) * 0.8).astype(float)
    out = zhong.fisher_bh_decay(c1, c2, alpha=0.1)
    p = []
    for k in range(80):
        a1, a2 = int(c1[..., k].sum()), int(c2[..., k].sum())
        p.append(fisher_exact([[a2, 10 - a2], [a1, 20 - a1]], alternative="less")[1])
    p = np.array(p)
    assert np.allclose(out["pvalues"], p)
    rej, adj, _, _ = statsmodels_mt.multipletests(p, alpha=0.1, method="fdr_bh")
    assert np.array_equal(out["declared"], rej) and np.allclose(out["adjusted"], adj)
    assert out["fraction"] == pytest.approx(rej.mean())


# --------------------------------------------------------------------------------------------------
# momentum
# --------------------------------------------------------------------------------------------------


def _naive_momentum(c1, c2, c3, width=0.1):
    """Both gains from the same runs of the middle model: regression to the mean builds in r < 0."""
    a1, a2, a3 = (c.mean(axis=(0, 1)) for c in (c1, c2, c3))
    d12, d23 = a2 - a1, a3 - a2
    idx = np.clip(np.floor(a2 / width), 0, int(round(1 / width)) - 1)
    rs, ns = [], []
    for b in np.unique(idx):
        sel = idx == b
        if sel.sum() >= 3 and np.ptp(d12[sel]) > 0 and np.ptp(d23[sel]) > 0:
            rs.append(np.corrcoef(d12[sel], d23[sel])[0, 1])
            ns.append(sel.sum())
    return np.average(rs, weights=ns)


def test_momentum_split_removes_regression_to_the_mean():
    rng = np.random.default_rng(12)
    m = 600
    truth = make_truth(["s1", "s2", "s3"], rng.normal(0, 1, m), ability=[0.0, 0.3, 0.6], pretrain_sd=0.5, finetune_sd=0.8)
    res, naive = [], []
    for r in range(8):
        C = sample_correctness(truth, P=6, F=3, rng=rng).astype(float)
        out = zhong.momentum(C[0], C[1], C[2])
        res.append(out["weighted_pearson"])
        naive.append(_naive_momentum(C[0], C[1], C[2]))
    # No planted momentum. The true gains are both monotone in difficulty, so the true within-bucket
    # correlation is >= 0; sharing the middle model's runs drives the naive estimate strongly negative
    # (regression to the mean, about -0.44 here) while the split estimate stays near 0 (about +0.06).
    assert np.mean(res) > -0.05
    assert np.mean(naive) < -0.3
    assert np.mean(res) - np.mean(naive) > 0.3


def test_momentum_detects_planted_momentum():
    table, truth = simulate_experiment(n_models=3, P=6, F=3, m=600, decaying_fraction=0.3, decay_margin=1.0,
                                       pretrain_sd=0.3, finetune_sd=0.5, rng=13)
    c = [table.grid(s).correct for s in ("s0", "s1", "s2")]
    out = zhong.momentum(*c)
    assert out["weighted_pearson"] > 0.2 and out["weighted_spearman"] > 0.2
    assert sum(b["n"] for b in out["buckets"]) == 600 and len(out["buckets"]) == 10
    assert out["middle_halves"] == {"half_a": [0, 1, 2], "half_b": [3, 4, 5]}
    allsplit = zhong.momentum(*c, split="all")
    assert allsplit["weighted_pearson"] > 0.1
    a2 = c[1][:3].mean(axis=(0, 1))
    assert np.allclose(out["d12"], a2 - c[0].mean(axis=(0, 1)))
    assert np.allclose(out["d23"], c[2].mean(axis=(0, 1)) - c[1][3:].mean(axis=(0, 1)))


# --------------------------------------------------------------------------------------------------
# (f) errors
# --------------------------------------------------------------------------------------------------


def test_errors_on_too_few_seeds():
    c = (np.random.default_rng(0).random((3, 2, 10)) < 0.5).astype(float)
    with pytest.raises(ValueError, match=r"P >= 2, F >= 2\), got P=1, F=2"):
        zhong.noise_decomposition(c[:1])
    with pytest.raises(ValueError, match=r"got P=3, F=1"):
        zhong.noise_decomposition(c[:, :1])
    with pytest.raises(ValueError, match="at least 2 pretraining seeds in c2"):
        zhong.momentum(c, c[:1], c)
    with pytest.raises(ValueError, match="at least 2 pretraining seeds in c1"):
        zhong.momentum(c[:1], c, c, split="all")
    with pytest.raises(ValueError, match="single run"):
        zhong.decay_lower_bound(c[:1, :1], c)
    bad = c.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="SeedGrid.complete"):
        zhong.noise_decomposition(bad)
    with pytest.raises(ValueError, match="same instances"):
        zhong.decay_lower_bound(c, c[..., :5])
    with pytest.raises(ValueError, match="3-D"):
        zhong.instance_accuracy(c[0])
    with pytest.raises(ValueError, match="0 or 1"):
        zhong.fisher_bh_decay(c * 0.5, c)


def test_finetune_share():
    assert zhong.finetune_share(0.01, 0.03) == pytest.approx(0.75)
    assert zhong.finetune_share(0.0, 0.02) == 1.0 and zhong.finetune_share(0.02, 0.0) == 0.0
    # an unbiased PretVar estimate can be negative: a share of it means nothing
    assert zhong.finetune_share(-0.001, 0.02) is None
    assert zhong.finetune_share(0.0, 0.0) is None and zhong.finetune_share(None, 0.1) is None
