"""Variance attribution (ANOVA estimators) on simulated experiments with known components."""

import json

import numpy as np
import pytest

from seedlab.stats import variance as va

R = 4000  # simulated experiments per check (vectorised; ~0.1 s)


def _within_mc_error(est: np.ndarray, truth: float, z: float = 4.0) -> bool:
    se = est.std(ddof=1) / np.sqrt(est.shape[0])
    return bool(abs(est.mean() - truth) < z * se)


def _crossed(rng, H, P, F, s2, R=R):
    """y = mu + a_h + b_p + ab_hp + e_hpf, shape (R, H, P, F); s2 = (config, pretrain, interaction, finetune)."""
    sa, sb, sab, se = np.sqrt(s2)
    return (0.8 + sa * rng.standard_normal((R, H, 1, 1)) + sb * rng.standard_normal((R, 1, P, 1))
            + sab * rng.standard_normal((R, H, P, 1)) + se * rng.standard_normal((R, H, P, F)))


def _nested(rng, H, P, F, s2, R=R):
    sa, sb, se = np.sqrt(s2)
    return (0.8 + sa * rng.standard_normal((R, H, 1, 1)) + sb * rng.standard_normal((R, H, P, 1))
            + se * rng.standard_normal((R, H, P, F)))


def test_crossed_raw_estimates_unbiased_naive_biased():
    rng = np.random.default_rng(0)
    H, P, F = 4, 5, 3
    truth = dict(zip(va.COMPONENTS, (1.0, 0.5, 0.25, 2.0)))
    Y = _crossed(rng, H, P, F, list(truth.values()))
    est = va.anova_components(Y, design="crossed")
    for comp, t in truth.items():
        assert _within_mc_error(est["raw"][comp], t), (comp, est["raw"][comp].mean(), t)
    # naive "variance of group means": E = s2_config + s2_ab / P + s2_e / (P F), biased upward
    naive_cfg = Y.mean(axis=(2, 3)).var(axis=1, ddof=1)
    assert not _within_mc_error(naive_cfg, truth["config"])
    assert _within_mc_error(naive_cfg, 1.0 + 0.25 / P + 2.0 / (P * F))  # ...and by exactly that much
    naive_pre = Y.mean(axis=(1, 3)).var(axis=1, ddof=1)
    assert not _within_mc_error(naive_pre, truth["pretrain_seed"])
    # normal-theory se is calibrated: mean se^2 ~ variance of the estimates across experiments
    for comp in va.COMPONENTS:
        ratio = np.mean(est["se"][comp] ** 2) / est["raw"][comp].var(ddof=1)
        assert 0.85 < ratio < 1.15, (comp, ratio)


def test_nested_raw_estimates_unbiased_and_crossed_formula_wrong_there():
    rng = np.random.default_rng(1)
    H, P, F = 3, 4, 3
    s2 = (0.6, 0.9, 1.5)
    Y = _nested(rng, H, P, F, s2)
    est = va.anova_components(Y, design="nested")
    for comp, t in zip(("config", "pretrain_seed", "finetune_seed"), s2):
        assert _within_mc_error(est["raw"][comp], t), (comp, est["raw"][comp].mean(), t)
    assert "config_x_pretrain" not in est["raw"]
    # analysing nested data as if crossed attributes the per-config checkpoints to the interaction
    wrong = va.anova_components(Y, design="crossed")
    assert not _within_mc_error(wrong["raw"]["config_x_pretrain"], 0.0)
    assert _within_mc_error(wrong["raw"]["pretrain_seed"], 0.0)


def test_one_way_and_truncation_bias():
    rng = np.random.default_rng(2)
    H, F = 5, 4
    Y = 0.7 + 1.2 * rng.standard_normal((R, H, 1, F))  # no config effect at all
    est = va.anova_components(Y, design="one_way")
    assert _within_mc_error(est["raw"]["config"], 0.0)
    assert _within_mc_error(est["raw"]["finetune_seed"], 1.44)
    truncated = np.maximum(est["raw"]["config"], 0.0)
    assert not _within_mc_error(truncated, 0.0)  # truncation at 0 biases a null component upward
    assert truncated.mean() > 0


def _long(Y, cfg_names=None, p_offset=0, nested=False):
    H, P, F = Y.shape
    h, p, f = np.meshgrid(np.arange(H), np.arange(P), np.arange(F), indexing="ij")
    names = np.array(cfg_names or [f"cfg{i}" for i in range(H)])
    pseed = p + p_offset + (100 * h if nested else 0)
    return Y.ravel(), names[h.ravel()], pseed.ravel(), 10 + f.ravel()


def test_long_format_matches_array_and_detects_design():
    rng = np.random.default_rng(3)
    Y = _crossed(rng, 3, 4, 3, (1.0, 0.5, 0.2, 1.0), R=1)[0]
    vals, cfg, ps, fs = _long(Y)
    perm = rng.permutation(vals.shape[0])
    vc = va.variance_components(vals[perm], cfg[perm], ps[perm], fs[perm])
    ref = va.anova_components(Y, design="crossed")
    assert vc.design == "crossed" and (vc.H, vc.P, vc.F) == (3, 4, 3) and not vc.dropped
    for comp in va.COMPONENTS:
        assert vc.components_raw[comp] == pytest.approx(float(ref["raw"][comp]), rel=1e-12)
        assert vc.components[comp] == max(vc.components_raw[comp], 0.0)
    assert sum(vc.shares.values()) == pytest.approx(1.0)
    assert sum(vc.shares_raw.values()) == pytest.approx(1.0)
    d = json.loads(json.dumps(vc.as_dict()))
    assert d["estimator"].startswith("ANOVA") and d["design"] == "crossed"

    vals, cfg, ps, fs = _long(Y, nested=True)  # disjoint seed ids per config -> nested
    assert va.variance_components(vals, cfg, ps, fs).design == "nested"
    vals, cfg, ps, fs = _long(Y[:, :1])  # one checkpoint -> one-way
    one = va.variance_components(vals, cfg, ps, fs)
    assert one.design == "one_way" and one.components_raw["pretrain_seed"] is None


def test_balancing_rule_reports_dropped_runs():
    rng = np.random.default_rng(4)
    Y = rng.normal(size=(3, 3, 4))
    vals, cfg, ps, fs = _long(Y)
    # drop one fine-tuning run of cell (cfg1, p=2) and every run of (cfg2, p=0)
    keep = ~(((cfg == "cfg1") & (ps == 2) & (fs == 11)) | ((cfg == "cfg2") & (ps == 0)))
    vc = va.variance_components(vals[keep], cfg[keep], ps[keep], fs[keep], design="crossed")
    assert (vc.H, vc.P, vc.F) == (3, 2, 3)  # seeds {1, 2} shared by all; 3 fine-tuning runs per cell
    # cell (cfg1, p=2) keeps f = 10, 12, 13; the others keep their 3 smallest: 10, 11, 12
    Yb = Y[:, 1:, :3].copy()
    Yb[1, 1] = Y[1, 2, [0, 2, 3]]
    ref = va.anova_components(Yb, design="crossed")["raw"]
    for comp in va.COMPONENTS:
        assert vc.components_raw[comp] == pytest.approx(float(ref[comp]), rel=1e-12)
    assert vc.n_runs == 3 * 2 * 3
    assert ("cfg2", 2, 13) in vc.dropped and ("cfg0", 0, 10) in vc.dropped
    assert len(vc.dropped) == keep.sum() - 18 and vc.notes
    with pytest.raises(ValueError, match="unbalanced"):
        va.variance_components(vals[keep], cfg[keep], ps[keep], fs[keep], design="crossed", balance=False)


def test_seed_vs_hparam_share_recovers_known_shares():
    rng = np.random.default_rng(5)
    H, P, F = 8, 8, 6
    s2 = np.array([3.0, 1.0, 0.0, 4.0])
    Y = _crossed(rng, H, P, F, s2, R=200)
    shares = []
    for r in range(Y.shape[0]):
        out = va.seed_vs_hparam_share(*_long(Y[r]))
        shares.append([out["raw"]["hparam"], out["raw"]["seed"]])
    shares = np.array(shares)
    # ratio estimator: loose check around the true shares 3/8 and 5/8
    assert abs(np.median(shares[:, 0]) - 3 / 8) < 0.08 and abs(np.median(shares[:, 1]) - 5 / 8) < 0.08
    assert out["design"] == "crossed" and set(out) >= {"hparam", "seed", "interaction", "estimator"}


def test_validation():
    with pytest.raises(ValueError, match="at least 2 configs"):
        va.anova_components(np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="one_way"):
        va.anova_components(np.zeros((2, 1, 3)), design="crossed")
    with pytest.raises(ValueError, match="design must be"):
        va.anova_components(np.zeros((2, 2, 3)), design="bogus")
    with pytest.raises(ValueError, match=">= 2 hyperparameter configs"):
        va.variance_components([1.0, 2.0], ["a", "a"], [0, 0], [0, 1])
    with pytest.raises(ValueError, match="duplicate run"):
        va.variance_components([1.0, 2.0], ["a", "a"], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="shared by some configs"):
        va.variance_components(np.arange(12.0), np.repeat(["a", "b", "c"], 4), [0, 0, 1, 1, 1, 1, 2, 2, 5, 5, 6, 6],
                               [0, 1] * 6)
    with pytest.raises(ValueError, match=">= 2 fine-tuning runs"):
        va.variance_components([1.0, 2.0, 3.0, 4.0], ["a", "a", "b", "b"], [0, 1, 0, 1], [0, 0, 0, 0])
