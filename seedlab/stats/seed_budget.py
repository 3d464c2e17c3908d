"""How many seeds a claim needs: planning pretraining and fine-tuning seeds from a finished pilot experiment.

Question (a): how many pretraining seeds P and fine-tuning seeds per pretraining seed F bring the Multi-Bootstrap
95% interval of a model's accuracy to a half-width h? Question (b): with how many does the Multi-Bootstrap
comparison of two models detect a difference delta with power 1 - beta? Both follow from the pilot's variance
components and the exact variance of the Multi-Bootstrap (Sellam et al. 2022) as a function of (P, F).

Model (the evaluation set of m examples is fixed; seeds are random). Correctness of run (p, f) on example k::

    c[p, f, k] = mu_k + a_p + (ax)_pk + b_pf + (bx)_pfk
    a ~ (0, s2_pretrain)   (ax) ~ (0, s2_pretrain_x_example)   b ~ (0, s2_finetune)   (bx) ~ (0, s2_finetune_x_example)

``a`` moves a seed's accuracy on every example (a seed "main effect"), ``(ax)`` is seed x example noise; ``b``
and ``(bx)`` the same for a fine-tuning run within its seed. ``S_x = mean_k (mu_k - mean mu)^2`` is the spread
of the examples' true accuracies (a fixed effect: the examples are given).

Estimation (``seed_variance``): the balanced three-way ANOVA, examples crossed with fine-tuning runs nested in
pretraining seeds, on the pilot's (P, F, m) correctness cube; expected mean squares::

    MS_A   (seeds,              df P-1)            E = s2_bx + m s2_b + F s2_ax + F m s2_a
    MS_B   (runs within seed,   df P(F-1))         E = s2_bx + m s2_b
    MS_X   (examples,           df m-1)            E = s2_bx + F s2_ax + P F sum_k (mu_k - mu)^2 / (m-1)
    MS_AX  (seed x example,     df (P-1)(m-1))     E = s2_bx + F s2_ax
    MS_E   (residual,           df P(F-1)(m-1))    E = s2_bx

    s2_bx = MS_E, s2_ax = (MS_AX - MS_E)/F, s2_b = (MS_B - MS_E)/m, s2_a = (MS_A - MS_B - MS_AX + MS_E)/(F m),
    S_x = (m-1)/m (MS_X - MS_AX)/(P F)

(Searle, Casella & McCulloch, *Variance Components*, 1992, ch. 4). The raw estimates are unbiased and can be
negative; predictions use them truncated at 0. With F = 1 the fine-tuning terms cannot be told from the
pretraining ones: ``s2_a`` then holds ``s2_a + s2_b`` and ``s2_ax`` holds ``s2_ax + s2_bx``, and only F = 1
designs are predicted.

The Multi-Bootstrap's variance. It resamples P seeds (counts s_i) and m examples (counts w_k) with replacement
and scores ``theta* = sum_ik s_i w_k Y_ik / (P m)``, Y = the seeds' per-example mean correctness. Exactly, given
the data: ``Var*(theta*) = S_row / P + S_col / m + S_int / (P m)`` with S_row the population variance of the
seed means, S_col that of the example means and S_int the mean squared seed x example residual. Its expectation
at a design (P, F), with ``s = s2_a + s2_b / F`` and ``g = s2_ax + s2_bx / F``::

    V*(P, F) = (P-1)/P^2 (s + g/m) + (S_x + (m-1)/m g/P) / m + (P-1)(m-1)/(P^2 m^2) g

Predicted half-width of the percentile interval: ``Phi^-1(0.975) sqrt(V*)``. The seed x example noise enters
three times (the two-way bootstrap's known overcount) and the seed term by (P-1)/P^2 instead of 1/P; the formula
predicts the interval the Multi-Bootstrap will give, not the estimator's true variance.

Comparison of two models B - A (unpaired seed draws, one shared example draw, as ``multibootstrap``): the
bootstrap variance of the difference is the sum of the two arms' seed terms plus ``(S_xd + (m-1)/m (g_A + g_B)/P)
/ m`` plus their interaction terms, with ``S_xd`` the spread over examples of the true per-example difference
``mu^B_k - mu^A_k`` (estimated from the pilot's per-example mean differences minus their seed noise). Over new
seeds the estimated difference has variance ``V_seed = (s_A + g_A/m)/P + (s_B + g_B/m)/P`` around the true
difference delta. The test rejects when the 95% interval excludes 0, so::

    power = Phi((delta - z SD*) / sqrt(V_seed)) + Phi((-delta - z SD*) / sqrt(V_seed)),   z = Phi^-1(0.975)

(normal approximation; SD* = sqrt of the bootstrap variance at the design). Both arms get the same (P, F).

Cost: ``hours = runs x hours per run + new pretraining seeds x hours per pretraining`` (the second is 0 when
the checkpoints exist, e.g. MultiBERTs). Without a pretraining cost, F = 1 is always cheapest (the seed term
``s2_a`` is not averaged away by more fine-tuning runs); with one, or with a cap on P, larger F pays.

``tests/stats/test_seed_budget.py`` shows the predicted half-width within 10% of the mean Multi-Bootstrap
half-width, and the predicted power within 0.05 of the rejection rate, of simulated experiments at the
recommended design.

Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

__all__ = ["SeedVariance", "seed_variance", "predicted_half_width", "predicted_power", "plan_half_width",
           "plan_power", "example_difference_spread"]

COMPONENTS = ("pretrain", "pretrain_x_example", "finetune", "finetune_x_example", "example_spread")
MAX_PRETRAIN = 2_000  # the search for P stops here when no cap is given
ESTIMATOR = ("three-way ANOVA variance components of per-example correctness (fine-tuning runs nested in "
             "pretraining seeds, crossed with examples); exact expected Multi-Bootstrap variance at (P, F)")


@dataclass(frozen=True)
class SeedVariance:
    """Variance components of one model's per-example correctness from a balanced pilot (``seed_variance``).

    Attributes:
        mean: the pilot's accuracy (mean correctness).
        P, F, m: the pilot's pretraining seeds, fine-tuning seeds per pretraining seed, examples.
        raw: unbiased ANOVA estimates (may be negative), keyed by COMPONENTS; the fine-tuning ones None when F = 1.
        components: the same truncated at 0, used for predictions.
        example_means: (m,) per-example mean correctness of the pilot (for ``example_difference_spread``).
    """

    mean: float
    P: int
    F: int
    m: int
    raw: dict
    components: dict
    example_means: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "P": self.P, "F": self.F, "m": self.m, "components_raw": self.raw,
                "components": self.components}


def _cube(correct) -> np.ndarray:
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 3:
        raise ValueError(f"correct must have shape (P, F, m) (pretraining seed, fine-tuning seed, example), got {c.shape}")
    P, F, m = c.shape
    if P < 2:
        raise ValueError(f"the pilot needs >= 2 pretraining seeds to estimate the pretraining-seed variance (P={P})")
    if m < 2:
        raise ValueError(f"the pilot needs >= 2 examples (m={m})")
    if not np.all(np.isfinite(c)):
        raise ValueError("correct must be finite (a balanced grid; use SeedGrid.complete())")
    return c


def seed_variance(correct) -> SeedVariance:
    """Pretraining-seed, fine-tuning-seed and example variance components of accuracy from a balanced pilot.

    Parameters
    ----------
    correct : array-like of shape (P, F, m)
        Correctness (1/0) of each run on each example, indexed [pretraining seed, fine-tuning seed, example];
        P >= 2 (``SeedGrid.complete().correct``).

    Returns
    -------
    SeedVariance
        Raw (unbiased) and truncated components ``pretrain`` (s2_a), ``pretrain_x_example`` (s2_ax),
        ``finetune`` (s2_b), ``finetune_x_example`` (s2_bx) and ``example_spread`` (S_x), from the expected mean
        squares in the module docstring.

    References
    ----------
    Searle, Casella & McCulloch, *Variance Components*, Wiley 1992, ch. 4 (ANOVA estimation, balanced data);
    Sellam et al., "The MultiBERTs: BERT Reproductions for Robustness Analysis", ICLR 2022 (the design).
    """
    c = _cube(correct)
    P, F, m = c.shape
    grand = c.mean()
    seed = c.mean(axis=(1, 2))
    run = c.mean(axis=2)
    example = c.mean(axis=(0, 1))
    seed_example = c.mean(axis=1)
    ms_a = F * m * np.sum((seed - grand) ** 2) / (P - 1)
    ms_x = P * F * np.sum((example - grand) ** 2) / (m - 1)
    ms_ax = F * np.sum((seed_example - seed[:, None] - example[None, :] + grand) ** 2) / ((P - 1) * (m - 1))
    if F >= 2:
        ms_b = m * np.sum((run - seed[:, None]) ** 2) / (P * (F - 1))
        resid = c - run[:, :, None] - seed_example[:, None, :] + seed[:, None, None]
        ms_e = np.sum(resid**2) / (P * (F - 1) * (m - 1))
        raw = {"pretrain": (ms_a - ms_b - ms_ax + ms_e) / (F * m), "pretrain_x_example": (ms_ax - ms_e) / F,
               "finetune": (ms_b - ms_e) / m, "finetune_x_example": ms_e}
    else:  # runs are seeds: the fine-tuning terms are inside the pretraining ones
        raw = {"pretrain": (ms_a - ms_ax) / m, "pretrain_x_example": ms_ax, "finetune": None,
               "finetune_x_example": None}
    raw["example_spread"] = (m - 1) / m * (ms_x - ms_ax) / (P * F)
    raw = {k: None if v is None else float(v) for k, v in raw.items()}
    used = {k: None if v is None else max(v, 0.0) for k, v in raw.items()}
    return SeedVariance(float(grand), P, F, m, raw, used, example)


def _check_design(v: SeedVariance, P: int, F: int) -> None:
    if int(P) != P or P < 2:
        raise ValueError(f"P must be an integer >= 2 (the Multi-Bootstrap resamples pretraining seeds), got {P}")
    if int(F) != F or F < 1:
        raise ValueError(f"F must be an integer >= 1, got {F}")
    if v.F == 1 and F != 1:
        raise ValueError(f"the pilot has F = 1: fine-tuning variance is not separable, only F = 1 can be predicted")


def _terms(v: SeedVariance, F: int) -> tuple[float, float]:
    """(s, g): seed-level and seed x example variance of a seed's mean over F fine-tuning runs."""
    c = v.components
    if v.F == 1:
        return c["pretrain"], c["pretrain_x_example"]
    return c["pretrain"] + c["finetune"] / F, c["pretrain_x_example"] + c["finetune_x_example"] / F


def _seed_part(v: SeedVariance, P: int, F: int) -> tuple[float, float, float]:
    """(bootstrap seed and interaction terms, g / P, true variance over new seeds) of one arm at (P, F)."""
    s, g = _terms(v, F)
    m = v.m
    boot = (P - 1) / P**2 * (s + g / m) + (P - 1) * (m - 1) / (P**2 * m**2) * g
    return boot, g / P, (s + g / m) / P


def _z(confidence: float) -> float:
    if not (0 < confidence < 1):
        raise ValueError(f"confidence must lie in (0, 1), e.g. 0.95, got {confidence}")
    return float(ndtri(0.5 + confidence / 2))


def predicted_half_width(variance: SeedVariance, *, P: int, F: int, confidence: float = 0.95) -> float:
    """Expected half-width of the Multi-Bootstrap interval of a model's accuracy at P x F seeds.

    Parameters
    ----------
    variance : SeedVariance
        The pilot's components (``seed_variance``).
    P, F : int
        Pretraining seeds (>= 2) and fine-tuning seeds per pretraining seed of the planned experiment.
    confidence : float, default=0.95
        Level of the percentile interval.

    Returns
    -------
    float
        ``Phi^-1((1 + confidence) / 2) sqrt(V*(P, F))``, V* from the module docstring (same m examples).

    References
    ----------
    Sellam et al., "The MultiBERTs", ICLR 2022 (the Multi-Bootstrap); the variance is derived in the module
    docstring.
    """
    _check_design(variance, P, F)
    boot, g_over_p, _ = _seed_part(variance, P, F)
    m = variance.m
    v = boot + (variance.components["example_spread"] + (m - 1) / m * g_over_p) / m
    return _z(confidence) * float(np.sqrt(v))


def example_difference_spread(baseline: SeedVariance, intervention: SeedVariance) -> float:
    """Spread over examples of the true per-example accuracy difference of two models (same examples).

    Parameters
    ----------
    baseline, intervention : SeedVariance
        The two models' pilots on the same m examples in the same order.

    Returns
    -------
    float
        ``S_xd = mean_k (D_k - mean D)^2 - (m-1)/m (g_A / P_A + g_B / P_B)``, truncated at 0, with D the pilots'
        per-example mean differences and g each pilot's seed x example variance at its own F.

    References
    ----------
    Searle, Casella & McCulloch, *Variance Components*, 1992 (method of moments); module docstring.
    """
    if baseline.m != intervention.m:
        raise ValueError(f"the pilots cover different numbers of examples ({baseline.m} vs {intervention.m})")
    d = intervention.example_means - baseline.example_means
    m = baseline.m
    noise = sum(_terms(v, v.F)[1] / v.P for v in (baseline, intervention))
    return max(float(np.mean((d - d.mean()) ** 2)) - (m - 1) / m * noise, 0.0)


def predicted_power(baseline: SeedVariance, intervention: SeedVariance, *, delta: float, P: int, F: int,
                    confidence: float = 0.95, example_spread: float | None = None) -> float:
    """Power of the unpaired Multi-Bootstrap comparison to detect an accuracy difference delta at P x F seeds.

    Parameters
    ----------
    baseline, intervention : SeedVariance
        The two models' pilots on the same examples.
    delta : float
        The true accuracy difference to detect (either sign).
    P, F : int
        Pretraining seeds (>= 2) and fine-tuning seeds per pretraining seed, in each arm.
    confidence : float, default=0.95
        The test rejects when this interval of the difference excludes 0.
    example_spread : float, optional
        S_xd; default ``example_difference_spread(baseline, intervention)``.

    Returns
    -------
    float
        ``Phi((delta - z SD*) / sqrt(V_seed)) + Phi((-delta - z SD*) / sqrt(V_seed))`` (module docstring).

    References
    ----------
    Sellam et al., "The MultiBERTs", ICLR 2022 (the test); Cohen, *Statistical Power Analysis for the Behavioral
    Sciences*, 1988 (power of a z test).
    """
    for v in (baseline, intervention):
        _check_design(v, P, F)
    if example_spread is None:
        example_spread = example_difference_spread(baseline, intervention)
    m = baseline.m
    parts = [_seed_part(v, P, F) for v in (baseline, intervention)]
    boot = sum(p[0] for p in parts) + (example_spread + (m - 1) / m * sum(p[1] for p in parts)) / m
    true_sd = float(np.sqrt(sum(p[2] for p in parts)))
    z = _z(confidence)
    if true_sd == 0:
        return float(abs(delta) > z * np.sqrt(boot))
    return float(ndtr((delta - z * np.sqrt(boot)) / true_sd) + ndtr((-delta - z * np.sqrt(boot)) / true_sd))


def _check_cost(seconds_per_run, pretrain_seconds, max_finetune, max_pretrain):
    if seconds_per_run is not None and not (np.isfinite(seconds_per_run) and seconds_per_run >= 0):
        raise ValueError(f"seconds_per_run must be a number >= 0 or None, got {seconds_per_run}")
    if not (np.isfinite(pretrain_seconds) and pretrain_seconds >= 0):
        raise ValueError(f"pretrain_seconds must be a number >= 0, got {pretrain_seconds}")
    if int(max_finetune) != max_finetune or max_finetune < 1:
        raise ValueError(f"max_finetune must be an integer >= 1, got {max_finetune}")
    if max_pretrain is not None and (int(max_pretrain) != max_pretrain or max_pretrain < 2):
        raise ValueError(f"max_pretrain must be an integer >= 2 or None, got {max_pretrain}")


def _search(value, meets, cap: int) -> tuple[int, float, bool]:
    """Smallest P in [2, cap] with meets(value(P)); (P, value, reached). A scan: power need not be monotone in P
    below one half (a wider bootstrap interval and a smaller seed SD pull both ways)."""
    for P in range(2, cap + 1):
        v = value(P)
        if meets(v):
            return P, v, True
    return cap, v, False


def _rows(value, meets, finetunes, cap, arms, seconds_per_run, pretrain_seconds):
    rows = []
    for F in finetunes:
        P, val, reached = _search(lambda p: value(p, F), meets, cap)
        runs = arms * P * F
        hours = None if seconds_per_run is None else (runs * seconds_per_run + arms * P * pretrain_seconds) / 3600
        rows.append({"P": P, "F": F, "runs": runs, "value": val, "reached": reached, "hours": hours})
    reached = [r for r in rows if r["reached"]]
    best = min(reached, key=lambda r: (r["runs"] if r["hours"] is None else r["hours"], r["runs"], -r["P"]),
               default=None)
    for r in rows:
        r["recommended"] = r is best
    return rows


def plan_half_width(variance: SeedVariance, *, half_width: float, confidence: float = 0.95, max_finetune: int = 4,
                    max_pretrain: int | None = None, seconds_per_run: float | None = None,
                    pretrain_seconds: float = 0.0) -> dict[str, Any]:
    """Designs (P, F) whose Multi-Bootstrap interval of the model's accuracy is at most ``half_width`` wide.

    Parameters
    ----------
    variance : SeedVariance
        The pilot's components.
    half_width : float
        Target half-width of the interval (accuracy units, e.g. 0.005).
    confidence : float, default=0.95
        Interval level.
    max_finetune : int, default=4
        Designs with F = 1 .. max_finetune (only F = 1 when the pilot has F = 1).
    max_pretrain : int, optional
        At most this many pretraining seeds (e.g. the checkpoints that exist); default: no cap.
    seconds_per_run : float, optional
        Device seconds of one fine-tuning run (the pilot's own timings); None: cost unknown.
    pretrain_seconds : float, default=0.0
        Device seconds to pretrain one new seed (0 when the checkpoints exist).

    Returns
    -------
    dict
        ``target``, ``floor`` (the half-width as P -> infinity: example sampling alone), ``unreachable`` (why,
        when the target is at or below the floor; then ``rows`` is empty), ``rows``: per F the smallest P
        reaching the target (``reached`` False: not within the cap, ``value`` at the cap), with ``runs``,
        predicted ``value`` and ``hours``; the cheapest reaching row is ``recommended``.

    References
    ----------
    Sellam et al., "The MultiBERTs", ICLR 2022; module docstring (variance and cost model).
    """
    _check_cost(seconds_per_run, pretrain_seconds, max_finetune, max_pretrain)
    if not half_width > 0:
        raise ValueError(f"half_width must be > 0, got {half_width}")
    finetunes = [1] if variance.F == 1 else list(range(1, int(max_finetune) + 1))
    cap = int(max_pretrain or MAX_PRETRAIN)
    value = lambda P, F: predicted_half_width(variance, P=P, F=F, confidence=confidence)  # noqa: E731
    floor = _z(confidence) * float(np.sqrt(variance.components["example_spread"] / variance.m))
    out = {"target": float(half_width), "confidence": float(confidence), "floor": floor, "rows": [],
           "unreachable": None}
    if half_width <= floor:  # the example term alone is wider: no number of seeds gets there
        out["unreachable"] = (f"below the floor {floor:.4g} that example sampling alone sets on this evaluation set "
                              "(more seeds cannot narrow it; more evaluation examples would)")
        return out
    out["rows"] = _rows(value, lambda x: x <= half_width, finetunes, cap, 1, seconds_per_run, pretrain_seconds)
    return out


def plan_power(baseline: SeedVariance, intervention: SeedVariance, *, delta: float, power: float = 0.8,
               confidence: float = 0.95, max_finetune: int = 4, max_pretrain: int | None = None,
               seconds_per_run: float | None = None, pretrain_seconds: float = 0.0) -> dict[str, Any]:
    """Designs (P, F), the same in both arms, whose Multi-Bootstrap comparison detects ``delta`` with ``power``.

    Parameters
    ----------
    baseline, intervention : SeedVariance
        The two models' pilots on the same examples.
    delta : float
        Accuracy difference to detect (> 0; the sign does not matter to the two-sided test).
    power : float, default=0.8
        1 - beta.
    confidence : float, default=0.95
        The test rejects when this interval of the difference excludes 0.
    max_finetune : int, default=4
        Designs with F = 1 .. max_finetune.
    max_pretrain : int, optional
        At most this many pretraining seeds per arm.
    seconds_per_run : float, optional
        Device seconds of one fine-tuning run (mean over both models' pilot runs); None: cost unknown.
    pretrain_seconds : float, default=0.0
        Device seconds to pretrain one new seed.

    Returns
    -------
    dict
        ``target``, ``delta``, ``example_spread`` (S_xd), ``rows`` as ``plan_half_width`` with ``value`` = the
        predicted power and ``runs``/``hours`` over both arms.

    References
    ----------
    Sellam et al., "The MultiBERTs", ICLR 2022; Cohen, *Statistical Power Analysis for the Behavioral Sciences*,
    1988; module docstring.
    """
    _check_cost(seconds_per_run, pretrain_seconds, max_finetune, max_pretrain)
    if not delta > 0:
        raise ValueError(f"delta must be > 0 (an accuracy difference, e.g. 0.01), got {delta}")
    if not (0 < power < 1):
        raise ValueError(f"power must lie in (0, 1), e.g. 0.8, got {power}")
    single_f = 1 in (baseline.F, intervention.F)
    finetunes = [1] if single_f else list(range(1, int(max_finetune) + 1))
    cap = int(max_pretrain or MAX_PRETRAIN)
    spread = example_difference_spread(baseline, intervention)
    value = lambda P, F: predicted_power(baseline, intervention, delta=delta, P=P, F=F, confidence=confidence,  # noqa: E731
                                         example_spread=spread)
    return {"target": float(power), "delta": float(delta), "confidence": float(confidence), "example_spread": spread,
            "unreachable": None,
            "rows": _rows(value, lambda x: x >= power, finetunes, cap, 2, seconds_per_run, pretrain_seconds)}
