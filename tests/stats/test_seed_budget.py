"""How many seeds (seedlab.stats.seed_budget): the ANOVA components are unbiased, the Multi-Bootstrap variance
formula is the bootstrap's, and on the simulator the predicted half-width and power at the recommended design
match what simulated experiments of that design give (half-width within 10%, power within 0.05)."""

from __future__ import annotations

import numpy as np
import pytest

from seedlab.stats.multibootstrap import multibootstrap
from seedlab.stats.seed_budget import (example_difference_spread, plan_half_width, plan_power, predicted_half_width,
                                       predicted_power, seed_variance)
from seedlab.stats.simulate import make_truth, sample_correctness


def linear_cube(gen, P, F, m, sd, mu):
    """c = mu_k + a_p + (ax)_pk + b_pf + (bx)_pfk with normal effects of known SDs (not binary: ANOVA needs none)."""
    a = gen.normal(0, sd["pretrain"], (P, 1, 1))
    ax = gen.normal(0, sd["pretrain_x_example"], (P, 1, m))
    b = gen.normal(0, sd["finetune"], (P, F, 1))
    bx = gen.normal(0, sd["finetune_x_example"], (P, F, m))
    return mu[None, None, :] + a + ax + b + bx


def test_components_are_unbiased():
    gen = np.random.default_rng(0)
    sd = {"pretrain": 0.05, "pretrain_x_example": 0.2, "finetune": 0.03, "finetune_x_example": 0.3}
    m = 60
    mu = gen.normal(0.5, 0.3, m)
    spread = float(np.mean((mu - mu.mean()) ** 2))
    est = np.array([[seed_variance(linear_cube(gen, 4, 3, m, sd, mu)).raw[k] for k in (*sd, "example_spread")]
                    for _ in range(800)])
    truth = np.array([*(v**2 for v in sd.values()), spread])
    se = est.std(axis=0, ddof=1) / np.sqrt(len(est))
    assert np.all(np.abs(est.mean(axis=0) - truth) < 4 * se), (est.mean(axis=0), truth, se)
    assert est[:, 0].min() < 0  # raw estimates can be negative; the truncated ones cannot
    assert min(seed_variance(linear_cube(gen, 4, 3, m, sd, mu)).components.values()) >= 0


def test_the_variance_formula_is_the_multibootstraps():
    """Given the data, Var*(theta*) = S_row/P + S_col/m + S_int/(P m) exactly; the Multi-Bootstrap's own samples
    (50,000 of them) have that variance within Monte-Carlo error."""
    gen = np.random.default_rng(1)
    P, F, m = 5, 2, 80
    correct = gen.random((P, F, m)) < gen.uniform(0.3, 0.9, m)[None, None, :]
    Y = correct.mean(axis=1)  # seed-level per-example means
    rows, cols = Y.mean(axis=1), Y.mean(axis=0)
    resid = Y - rows[:, None] - cols[None, :] + Y.mean()
    exact = np.var(rows) / P + np.var(cols) / m + np.mean(resid**2) / (P * m)
    labels = np.zeros(m, dtype=int)
    preds = (~correct).reshape(P * F, m).astype(int)
    res = multibootstrap(labels, preds, np.repeat(np.arange(P), F), n_bootstrap=50_000, rng=0)
    boot = res.samples[:, 0]
    se = np.sqrt(np.mean((boot - boot.mean()) ** 4) - np.var(boot) ** 2) / np.sqrt(len(boot))
    assert abs(np.var(boot) - exact) < 4 * se


def test_the_expected_bootstrap_variance_at_a_design():
    """E over seeds of that exact variance is V*(P, F) of the module docstring (linear model, known truth)."""
    gen = np.random.default_rng(2)
    sd = {"pretrain": 0.06, "pretrain_x_example": 0.25, "finetune": 0.04, "finetune_x_example": 0.35}
    P, F, m = 6, 2, 50
    mu = gen.normal(0.6, 0.2, m)
    pilot = seed_variance(linear_cube(gen, 400, 3, m, sd, mu))
    exact = []
    for _ in range(3000):
        Y = linear_cube(gen, P, F, m, sd, mu).mean(axis=1)
        rows, cols = Y.mean(axis=1), Y.mean(axis=0)
        resid = Y - rows[:, None] - cols[None, :] + Y.mean()
        exact.append(np.var(rows) / P + np.var(cols) / m + np.mean(resid**2) / (P * m))
    predicted = (predicted_half_width(pilot, P=P, F=F) / 1.959963984540054) ** 2
    assert np.mean(exact) == pytest.approx(predicted, rel=0.05)


# --------------------------------------------------------------------------------------------------
# calibration on the simulator (the probit seed tree), at the recommended design
# --------------------------------------------------------------------------------------------------

M = 200


@pytest.fixture(scope="module")
def world():
    """Two models on one fixed evaluation set; a seed main effect (pretrain_shared) so that P matters. The
    pilot is large (P=400) so that its components are close to the truth: what is calibrated here is the
    prediction, not a small pilot's estimation error (docs/statistics.md says how large that is)."""
    gen = np.random.default_rng(0)
    truth = make_truth(["a", "b"], gen.normal(0, 1, M), ability=[0.0, 0.4], pretrain_sd=0.6, finetune_sd=0.6,
                       pretrain_shared=0.3, finetune_shared=0.05)
    pilot = sample_correctness(truth, P=400, F=2, rng=1).astype(float)
    return truth, seed_variance(pilot[0]), seed_variance(pilot[1])


def simulate(truth, P, F, n_experiments, rng):
    """Multi-Bootstrap results of n simulated experiments of design P x F (fresh seeds, same examples)."""
    labels = np.zeros(M, dtype=int)
    seeds = np.repeat(np.arange(P), F)
    out = []
    for e in sample_correctness(truth, P=P, F=F, rng=rng, n_experiments=n_experiments):
        pa, pb = ((~e[i]).reshape(P * F, M).astype(int) for i in (0, 1))
        out.append(multibootstrap(labels, pa, seeds, pb, seeds, n_bootstrap=200, rng=0))
    return out


def test_predicted_half_width_is_calibrated_at_the_recommended_design(world):
    truth, pilot_a, _ = world
    plan = plan_half_width(pilot_a, half_width=0.07)
    best = next(r for r in plan["rows"] if r["recommended"])
    assert best["F"] == 1 and 8 <= best["P"] <= 40  # no pretraining cost: F = 1 is cheapest
    runs = simulate(truth, best["P"], best["F"], 250, rng=10)
    observed = np.mean([(r.baseline.ci_high - r.baseline.ci_low) / 2 for r in runs])
    assert best["value"] == pytest.approx(observed, rel=0.10)
    assert best["value"] <= 0.07 < predicted_half_width(pilot_a, P=best["P"] - 1, F=1)  # the smallest such P


def test_predicted_power_is_calibrated_at_the_recommended_design(world):
    truth, pilot_a, pilot_b = world
    delta = truth.accuracy[1] - truth.accuracy[0]  # the difference on these examples
    plan = plan_power(pilot_a, pilot_b, delta=delta, power=0.8)
    best = next(r for r in plan["rows"] if r["recommended"])
    assert 8 <= best["P"] <= 40
    runs = simulate(truth, best["P"], best["F"], 400, rng=20)
    rejected = np.mean([r.delta.ci_low > 0 or r.delta.ci_high < 0 for r in runs])
    assert best["value"] == pytest.approx(rejected, abs=0.05)
    assert best["value"] >= 0.8 > predicted_power(pilot_a, pilot_b, delta=delta, P=best["P"] - 1, F=best["F"])


# --------------------------------------------------------------------------------------------------
# the planner's arithmetic
# --------------------------------------------------------------------------------------------------


def test_costs_caps_and_pretraining(world):
    _, pilot_a, pilot_b = world
    free = plan_half_width(pilot_a, half_width=0.06, seconds_per_run=1800)
    for r in free["rows"]:
        assert r["runs"] == r["P"] * r["F"] and r["hours"] == pytest.approx(r["runs"] * 0.5)
    # pretraining a seed costs 40 h: fewer pretraining seeds with more fine-tuning runs each become cheaper
    costly = plan_half_width(pilot_a, half_width=0.06, seconds_per_run=1800, pretrain_seconds=40 * 3600)
    best = next(r for r in costly["rows"] if r["recommended"])
    assert best["F"] > 1 and best["hours"] == pytest.approx(best["P"] * best["F"] * 0.5 + best["P"] * 40)
    assert best["hours"] == min(r["hours"] for r in costly["rows"] if r["reached"])
    capped = plan_half_width(pilot_a, half_width=0.06, max_pretrain=5)
    assert all(r["P"] <= 5 for r in capped["rows"])
    assert not any(r["reached"] for r in capped["rows"]) or any(r["recommended"] for r in capped["rows"])
    pw = plan_power(pilot_a, pilot_b, delta=0.02, seconds_per_run=3600)
    assert all(r["runs"] == 2 * r["P"] * r["F"] and r["hours"] == pytest.approx(r["runs"]) for r in pw["rows"])
    floor = plan_half_width(pilot_a, half_width=0.01)  # narrower than the examples allow
    assert floor["rows"] == [] and "floor" in floor["unreachable"] and floor["floor"] > 0.01
    assert example_difference_spread(pilot_a, pilot_b) >= 0


def test_a_pilot_with_one_finetuning_seed_plans_only_f_1():
    gen = np.random.default_rng(3)
    sd = {"pretrain": 0.05, "pretrain_x_example": 0.2, "finetune": 0.03, "finetune_x_example": 0.3}
    cube = linear_cube(gen, 6, 1, 40, sd, gen.normal(0.5, 0.2, 40))
    v = seed_variance(cube)
    assert v.raw["finetune"] is None and v.raw["pretrain"] is not None
    assert [r["F"] for r in plan_half_width(v, half_width=0.2)["rows"]] == [1]
    with pytest.raises(ValueError, match="F = 1"):
        predicted_half_width(v, P=4, F=2)
    with pytest.raises(ValueError, match="pretraining seeds"):
        seed_variance(cube[:1])
    with pytest.raises(ValueError, match="P must be"):
        predicted_half_width(v, P=1, F=1)
