"""How much of a task metric's variance is due to hyperparameters, pretraining seeds and fine-tuning seeds.

Random-effects ANOVA with method-of-moments (expected-mean-squares, "ANOVA") estimators for balanced designs;
Searle, Casella & McCulloch, *Variance Components* (1992), ch. 4; Montgomery, *Design and Analysis of
Experiments*, ch. 13 (two-factor random and nested models). The question is the one of "hyperparameters,
mitigation methods and seeds together": with runs at several hyperparameter configurations, is the spread
of the score driven by the configuration or by the seeds? (Dodge et al. 2020, arXiv 2002.06305, ask the
seed half of it; METHODS.md section 5.)

Data: one task-metric value ``y`` per run, with its hyperparameter configuration ``h`` (H levels),
pretraining seed ``p`` and fine-tuning seed ``f``.

Designs (``design``):

* ``"crossed"``: every configuration is fine-tuned from the same P pretrained checkpoints (configs crossed
  with pretraining seeds), F fine-tuning runs per (h, p) cell, fine-tuning seeds nested in cells::

      y[h,p,f] = mu + a_h + b_p + (ab)_hp + e_hpf,
      a ~ (0, s2_config), b ~ (0, s2_pretrain), ab ~ (0, s2_config_x_pretrain), e ~ (0, s2_finetune)

  Sums of squares with dot-means ``y_h..``, ``y_.p.``, ``y_hp.``, ``y_...``::

      MS_A  = P F sum_h (y_h.. - y_...)^2 / (H-1)                         E = s2_e + F s2_ab + P F s2_a
      MS_B  = H F sum_p (y_.p. - y_...)^2 / (P-1)                         E = s2_e + F s2_ab + H F s2_b
      MS_AB = F sum_hp (y_hp. - y_h.. - y_.p. + y_...)^2 / ((H-1)(P-1))   E = s2_e + F s2_ab
      MS_E  = sum_hpf (y_hpf - y_hp.)^2 / (H P (F-1))                      E = s2_e

      s2_finetune = MS_E,  s2_config_x_pretrain = (MS_AB - MS_E) / F,
      s2_config = (MS_A - MS_AB) / (P F),  s2_pretrain = (MS_B - MS_AB) / (H F)

* ``"nested"``: each configuration has its own pretrained checkpoints (e.g. the configuration changes
  pretraining, or seed ids are not the same checkpoints across configurations): ``y = mu + a_h + b_p(h) +
  e_hpf``::

      MS_A    = P F sum_h (y_h.. - y_...)^2 / (H-1)          E = s2_e + F s2_b(a) + P F s2_a
      MS_B(A) = F sum_hp (y_hp. - y_h..)^2 / (H (P-1))       E = s2_e + F s2_b(a)
      MS_E    as above                                       E = s2_e

      s2_finetune = MS_E,  s2_pretrain = (MS_B(A) - MS_E) / F,  s2_config = (MS_A - MS_B(A)) / (P F)

  ``pretrain`` then means "pretraining seed within configuration": if the truth is crossed it estimates
  s2_b + s2_ab, and ``config_x_pretrain`` is not separable (None).

* ``"one_way"``: one pretrained checkpoint per configuration (P = 1): ``y = mu + a_h + e``, ``MS_A = F sum_h
  (y_h. - y_..)^2 / (H-1)``, ``s2_config = (MS_A - MS_E) / F``. The configuration component then also holds
  any configuration x checkpoint interaction (and, if each configuration has its own checkpoint, the
  checkpoint's variance); ``pretrain`` and ``config_x_pretrain`` are None.

``"auto"`` picks crossed when every configuration has the same pretraining seed ids (one_way when that set
has one seed), nested when no two configurations share a pretraining seed id, and refuses a partial overlap
(pass ``design`` explicitly). Seed ids are only labels: whether seed 3 under two configurations is the same
checkpoint is for the caller to know; ``design="nested"`` is the safe reading when unsure.

Estimates: the raw ANOVA estimates are unbiased (any distribution, balanced design) and can be negative;
they are reported as ``components_raw`` / ``shares_raw`` (share = component / sum of components; the sum of
the raw components is an unbiased estimate of Var(y) of a single run). ``components`` / ``shares`` are the
*truncated* version: negative estimates set to 0, then shares renormalised. Truncation biases small
components upward; average raw values, never truncated ones, across experiments.

Standard errors (``se``): each estimate is a linear combination ``sum_i c_i MS_i`` of independent mean
squares; under normality ``Var(MS_i) = 2 E[MS_i]^2 / df_i`` and ``2 MS_i^2 / (df_i + 2)`` estimates it
without bias, so ``se = sqrt(sum_i c_i^2 2 MS_i^2 / (df_i + 2))`` (Searle et al. 1992, section 4.5).
Normal-theory only; with few levels (H or P of 3-5) the components of config and pretraining seed have few
degrees of freedom and are very uncertain; read the se.

Balance: the estimators need a balanced design. ``variance_components`` makes one by a documented,
deterministic rule and reports every dropped run: crossed keeps the pretraining seeds present under every
configuration; nested keeps the P smallest pretraining seed ids of each configuration, P the smallest count;
then every kept (h, p) cell keeps its F smallest fine-tuning seed ids, F the smallest cell count.

Fine-tuning seed ids are treated as nested in cells (independent draws). If the same fine-tuning seed id
means the same data order / head initialisation across cells, a fine-tuning-seed main effect s2_c cancels in
the cell means and lands in MS_E: s2_finetune then includes it, and s2_config_x_pretrain is biased down by
s2_c / F.

Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "VarianceComponents",
    "anova_components",
    "variance_components_array",
    "variance_components",
    "seed_vs_hparam_share",
    "COMPONENTS",
    "DESIGNS",
]

#: component names, in reporting order
COMPONENTS = ("config", "pretrain_seed", "config_x_pretrain", "finetune_seed")
DESIGNS = ("crossed", "nested", "one_way")

_EMS = {
    "crossed": {
        "config": "s2_finetune + F s2_config_x_pretrain + P F s2_config",
        "pretrain_seed": "s2_finetune + F s2_config_x_pretrain + H F s2_pretrain_seed",
        "config_x_pretrain": "s2_finetune + F s2_config_x_pretrain",
        "finetune_seed": "s2_finetune",
    },
    "nested": {
        "config": "s2_finetune + F s2_pretrain_seed + P F s2_config",
        "pretrain_seed": "s2_finetune + F s2_pretrain_seed   (pretraining seed within config)",
        "finetune_seed": "s2_finetune",
    },
    "one_way": {"config": "s2_finetune + F s2_config", "finetune_seed": "s2_finetune"},
}

_ESTIMATOR = {
    "crossed": "ANOVA (expected mean squares) estimator, balanced two-way random effects with replication "
    "(config x pretraining seed, fine-tuning seeds nested)",
    "nested": "ANOVA (expected mean squares) estimator, balanced nested random effects "
    "(fine-tuning seed in pretraining seed in config)",
    "one_way": "ANOVA (expected mean squares) estimator, balanced one-way random effects (config, fine-tuning seeds)",
}


def anova_components(Y, *, design: str = "crossed") -> dict[str, Any]:
    """Raw (untruncated) ANOVA estimates of the variance components of a balanced array.

    Parameters
    ----------
    Y : array-like of shape (..., H, P, F)
        One metric value per run: config h, pretraining seed p, fine-tuning seed f. Leading axes are
        batches, estimated at once (many simulated experiments).
    design : {"crossed", "nested", "one_way"}, default="crossed"
        The random-effects model (module docstring; ``DESIGNS``).

    Returns
    -------
    dict
        ``{"raw": {component: array}, "se": {component: array}, "ms": {source: array}, "df": {source:
        int}}``; components not estimable under ``design`` are absent.

    Notes
    -----
    Each component is a linear combination of mean squares, from their expectations; crossed::

        s2_finetune = MS_E,  s2_config_x_pretrain = (MS_AB - MS_E) / F,
        s2_config = (MS_A - MS_AB) / (P F),  s2_pretrain = (MS_B - MS_AB) / (H F)

    (nested and one-way in the module docstring). Normal-theory standard error of ``sum_i c_i MS_i``:
    ``sqrt(sum_i c_i^2 2 MS_i^2 / (df_i + 2))``.

    References
    ----------
    Searle, Casella & McCulloch, *Variance Components*, Wiley 1992, ch. 4 (section 4.5 for the standard
    errors); Montgomery, *Design and Analysis of Experiments*, ch. 13.
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim < 3:
        raise ValueError(f"Y must have shape (..., H, P, F), got shape {Y.shape}")
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y must be finite")
    H, P, F = Y.shape[-3:]
    if H < 2 or F < 2:
        raise ValueError(f"need at least 2 configs and 2 fine-tuning seeds per cell, got H={H}, F={F}")
    if design == "one_way" and P != 1:
        raise ValueError(f"design 'one_way' needs one pretraining seed per config (P=1), got P={P}")
    if design != "one_way" and P < 2:
        raise ValueError(f"design {design!r} needs at least 2 pretraining seeds per config, got P={P}; use 'one_way'")

    cell = Y.mean(axis=-1)  # (..., H, P)
    row = cell.mean(axis=-1)  # (..., H)
    grand = row.mean(axis=-1)  # (...)
    g = grand[..., None]
    ss_e = np.sum((Y - cell[..., None]) ** 2, axis=(-3, -2, -1))
    df_e = H * P * (F - 1)
    ss_a = P * F * np.sum((row - g) ** 2, axis=-1)
    df_a = H - 1
    ms = {"config": ss_a / df_a, "finetune_seed": ss_e / df_e}
    df = {"config": df_a, "finetune_seed": df_e}
    if design == "crossed":
        col = cell.mean(axis=-2)  # (..., P)
        ss_b = H * F * np.sum((col - g) ** 2, axis=-1)
        inter = cell - row[..., :, None] - col[..., None, :] + grand[..., None, None]
        ss_ab = F * np.sum(inter**2, axis=(-2, -1))
        ms["pretrain_seed"] = ss_b / (P - 1)
        ms["config_x_pretrain"] = ss_ab / ((H - 1) * (P - 1))
        df["pretrain_seed"] = P - 1
        df["config_x_pretrain"] = (H - 1) * (P - 1)
        # component = sum_i coef_i MS_i
        coefs = {
            "config": {"config": 1 / (P * F), "config_x_pretrain": -1 / (P * F)},
            "pretrain_seed": {"pretrain_seed": 1 / (H * F), "config_x_pretrain": -1 / (H * F)},
            "config_x_pretrain": {"config_x_pretrain": 1 / F, "finetune_seed": -1 / F},
            "finetune_seed": {"finetune_seed": 1.0},
        }
    elif design == "nested":
        ss_b = F * np.sum((cell - row[..., None]) ** 2, axis=(-2, -1))
        ms["pretrain_seed"] = ss_b / (H * (P - 1))
        df["pretrain_seed"] = H * (P - 1)
        coefs = {
            "config": {"config": 1 / (P * F), "pretrain_seed": -1 / (P * F)},
            "pretrain_seed": {"pretrain_seed": 1 / F, "finetune_seed": -1 / F},
            "finetune_seed": {"finetune_seed": 1.0},
        }
    else:
        coefs = {
            "config": {"config": 1 / F, "finetune_seed": -1 / F},
            "finetune_seed": {"finetune_seed": 1.0},
        }
    raw, se = {}, {}
    for comp in COMPONENTS:
        if comp not in coefs:
            continue
        raw[comp] = sum(c * ms[src] for src, c in coefs[comp].items())
        se[comp] = np.sqrt(sum(c * c * 2.0 * ms[src] ** 2 / (df[src] + 2.0) for src, c in coefs[comp].items()))
    return {"raw": raw, "se": se, "ms": ms, "df": df}


def _shares(comp: dict[str, float]) -> dict[str, float | None]:
    total = sum(comp.values())
    if not np.isfinite(total) or total == 0:
        return {k: None for k in comp}
    return {k: float(v / total) for k, v in comp.items()}


@dataclass(frozen=True)
class VarianceComponents:
    """Result of ``variance_components`` / ``variance_components_array``.

    Attributes:
        design: "crossed", "nested" or "one_way"; estimator: the estimator in words.
        H, P, F: configs, pretraining seeds per config, fine-tuning seeds per cell (after balancing).
        n_runs: H * P * F runs used.
        components_raw: {component: unbiased ANOVA estimate (may be < 0), or None if not estimable}.
        components: the truncated estimates (negative -> 0).
        shares_raw / shares: component / sum of components, for raw / truncated estimates.
        se: normal-theory standard error of each raw estimate.
        mean_squares, df: per source; expected_mean_squares: their expectations in words.
        mean: grand mean of the metric.
        configs: the config labels used (sorted, as strings); dropped: runs left out by balancing, as
            ``(config, pretrain_seed, finetune_seed)``; notes: what balancing and the design imply.
    """

    design: str
    estimator: str
    H: int
    P: int
    F: int
    n_runs: int
    components_raw: dict
    components: dict
    shares_raw: dict
    shares: dict
    se: dict
    mean_squares: dict
    df: dict
    expected_mean_squares: dict
    mean: float
    configs: tuple = ()
    dropped: tuple = ()
    notes: tuple = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "estimator": self.estimator,
            "design": self.design,
            "H": self.H,
            "P": self.P,
            "F": self.F,
            "n_runs": self.n_runs,
            "mean": self.mean,
            "components_raw": dict(self.components_raw),
            "components": dict(self.components),
            "shares_raw": dict(self.shares_raw),
            "shares": dict(self.shares),
            "se": dict(self.se),
            "mean_squares": dict(self.mean_squares),
            "df": dict(self.df),
            "expected_mean_squares": dict(self.expected_mean_squares),
            "configs": list(self.configs),
            "dropped": [list(d) for d in self.dropped],
            "notes": list(self.notes),
        }


def variance_components_array(Y, *, design: str = "crossed", configs=(), dropped=(), notes=()) -> VarianceComponents:
    """Variance components of a balanced array ``Y[h, p, f]`` (one metric value per run).

    Parameters
    ----------
    Y : array-like of shape (H, P, F)
        The balanced design.
    design : {"crossed", "nested", "one_way"}, default="crossed"
        The random-effects model (module docstring).
    configs : sequence, default=()
        The config labels of the H rows (recorded).
    dropped : sequence, default=()
        Runs left out when the design was balanced, as (config, pretrain_seed, finetune_seed) (recorded).
    notes : sequence of str, default=()
        Notes carried into the result.

    Returns
    -------
    VarianceComponents
        Raw (unbiased, possibly negative) and truncated components, their shares, se, mean squares.

    Notes
    -----
    The raw components are those of ``anova_components``; ``components`` sets negative ones to 0; a share
    is component / sum of components (of the raw or the truncated set).

    References
    ----------
    Searle, Casella & McCulloch, *Variance Components*, Wiley 1992, ch. 4.
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 3:
        raise ValueError(f"Y must have shape (H, P, F), got shape {Y.shape}")
    est = anova_components(Y, design=design)
    raw = {k: float(v) for k, v in est["raw"].items()}
    trunc = {k: max(v, 0.0) for k, v in raw.items()}
    full = lambda d: {k: d.get(k) for k in COMPONENTS}  # noqa: E731  (None where not estimable)
    H, P, F = Y.shape
    notes = list(notes)
    neg = [k for k, v in raw.items() if v < 0]
    if neg:
        notes.append(f"negative raw estimate(s) {neg} truncated to 0 in 'components'/'shares' "
                     "(true value likely small)")
    if design == "nested":
        notes.append("nested: 'pretrain_seed' is the pretraining seed within config; "
                     "config_x_pretrain is not separable")
    if design == "one_way":
        notes.append("one_way (P=1): 'config' also holds any config x checkpoint interaction; pretraining-seed "
                     "variance is not estimable")
    return VarianceComponents(
        design=design,
        estimator=_ESTIMATOR[design],
        H=int(H), P=int(P), F=int(F), n_runs=int(H * P * F),
        components_raw=full(raw),
        components=full(trunc),
        shares_raw=full(_shares(raw)),
        shares=full(_shares(trunc)),
        se=full({k: float(v) for k, v in est["se"].items()}),
        mean_squares={k: float(v) for k, v in est["ms"].items()},
        df={k: int(v) for k, v in est["df"].items()},
        expected_mean_squares=dict(_EMS[design]),
        mean=float(Y.mean()),
        configs=tuple(str(c) for c in configs),
        dropped=tuple(dropped),
        notes=tuple(notes),
    )


def _balanced(values, config, pretrain_seed, finetune_seed, design: str, balance: bool):
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or y.shape[0] == 0:
        raise ValueError(f"values must be a non-empty 1-D array (one metric value per run), got shape {y.shape}")
    n = y.shape[0]
    if not np.all(np.isfinite(y)):
        raise ValueError("values must be finite")
    cfg = np.asarray(config)
    ps = np.asarray(pretrain_seed)
    fs = np.asarray(finetune_seed)
    for name, arr in (("config", cfg), ("pretrain_seed", ps), ("finetune_seed", fs)):
        if arr.shape != (n,):
            raise ValueError(f"{name} must have one entry per run, shape ({n},), got {arr.shape}")
    for name, arr in (("pretrain_seed", ps), ("finetune_seed", fs)):
        if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
            raise ValueError(f"{name} must hold integer seeds, got dtype {arr.dtype}")
    ps = ps.astype(np.int64)
    fs = fs.astype(np.int64)
    cfg = cfg.astype(str)
    configs = sorted(set(cfg.tolist()))
    cells: dict[tuple[str, int], dict[int, int]] = {}
    for i in range(n):
        cell = cells.setdefault((cfg[i], int(ps[i])), {})
        if int(fs[i]) in cell:
            raise ValueError(f"duplicate run: config={cfg[i]!r}, pretrain_seed={ps[i]}, finetune_seed={fs[i]}")
        cell[int(fs[i])] = i
    if len(configs) < 2:
        raise ValueError(f"need runs at >= 2 hyperparameter configs to attribute variance, got {configs}")
    seeds = {h: sorted(p for (c, p) in cells if c == h) for h in configs}
    sets = [set(v) for v in seeds.values()]
    same = all(s == sets[0] for s in sets)
    disjoint = sum(len(s) for s in sets) == len(set().union(*sets))
    if design == "auto":
        if same:
            design = "one_way" if len(sets[0]) == 1 else "crossed"
        elif disjoint:
            design = "one_way" if min(len(s) for s in sets) == 1 else "nested"
        else:
            raise ValueError("pretraining seed ids are shared by some configs but not all; pass design='crossed' "
                             "(keeps the seeds every config has) or design='nested'")
    elif design not in DESIGNS:
        raise ValueError(f"design must be 'auto' or one of {DESIGNS}, got {design!r}")
    notes = []
    if design == "crossed":
        common = sorted(set.intersection(*sets))
        if len(common) < 2:
            raise ValueError(f"design 'crossed' needs >= 2 pretraining seeds shared by every config, got {common}")
        keep_p = {h: common for h in configs}
    else:
        k = min(len(s) for s in seeds.values())
        if design == "one_way":
            k = 1
        keep_p = {h: seeds[h][:k] for h in configs}
    f_counts = [len(cells[(h, p)]) for h in configs for p in keep_p[h]]
    F = min(f_counts)
    if F < 2:
        raise ValueError(f"every (config, pretraining seed) cell needs >= 2 fine-tuning runs; the smallest has {F}")
    keep_rows = np.empty((len(configs), len(keep_p[configs[0]]), F), dtype=np.int64)
    kept = set()
    for a, h in enumerate(configs):
        for b, p in enumerate(keep_p[h]):
            fsel = sorted(cells[(h, p)])[:F]
            for c, f in enumerate(fsel):
                keep_rows[a, b, c] = cells[(h, p)][f]
                kept.add(cells[(h, p)][f])
    dropped = tuple((str(cfg[i]), int(ps[i]), int(fs[i])) for i in range(n) if i not in kept)
    if dropped:
        if not balance:
            raise ValueError(f"the design is unbalanced ({len(dropped)} run(s) would be dropped); pass balance=True")
        notes.append(f"balanced by dropping {len(dropped)} of {n} runs (rule: module docstring): {list(dropped)[:20]}")
    return y[keep_rows], design, configs, dropped, notes


def variance_components(values, config, pretrain_seed, finetune_seed, *, design: str = "auto",
                        balance: bool = True) -> VarianceComponents:
    """Variance of a task metric attributed to config, pretraining seed, their interaction and fine-tuning seed.

    Parameters
    ----------
    values : array-like of shape (n,)
        One task-metric value per run.
    config : array-like of shape (n,)
        Hyperparameter-configuration id per run (any labels, compared as strings).
    pretrain_seed, finetune_seed : array-like of int, shape (n,)
        The seeds of each run.
    design : {"auto", "crossed", "nested", "one_way"}, default="auto"
        The random-effects model; ``"auto"`` picks it from which pretraining seeds the configs share
        (module docstring).
    balance : bool, default=True
        Cut an unbalanced design down by the documented rule (dropped runs are reported); False raises
        instead.

    Returns
    -------
    VarianceComponents
        Raw unbiased and truncated components and shares, se, mean squares.

    Notes
    -----
    Crossed model ``y[h,p,f] = mu + a_h + b_p + (ab)_hp + e_hpf`` with the ANOVA (expected mean squares)
    estimators of ``anova_components``; nested ``y = mu + a_h + b_p(h) + e``; one-way ``y = mu + a_h + e``.

    References
    ----------
    Searle, Casella & McCulloch, *Variance Components*, Wiley 1992, ch. 4; Dodge, Ilharco, Schwartz,
    Farhadi, Hajishirzi & Smith, "Fine-Tuning Pretrained Language Models: Weight Initializations, Data
    Orders, and Early Stopping", arXiv 2002.06305, 2020 (the seed side of the question).
    """
    Y, design, configs, dropped, notes = _balanced(values, config, pretrain_seed, finetune_seed, design, balance)
    return variance_components_array(Y, design=design, configs=configs, dropped=dropped, notes=notes)


def seed_vs_hparam_share(values, config, pretrain_seed, finetune_seed, *, design: str = "auto") -> dict[str, Any]:
    """Shares of the metric's variance due to hyperparameters vs seeds (truncated ANOVA estimates).

    Parameters
    ----------
    values, config, pretrain_seed, finetune_seed : array-like of shape (n,)
        As for ``variance_components`` (whose balancing rule applies).
    design : {"auto", "crossed", "nested", "one_way"}, default="auto"
        The random-effects model.

    Returns
    -------
    dict
        ``{"hparam", "seed", "pretrain_seed", "finetune_seed", "interaction", "design", "estimator",
        "n_runs", "dropped", "raw": {...the same shares, untruncated}}``; None where not estimable.

    Notes
    -----
    ``hparam = share(config)``, ``seed = share(pretrain_seed) + share(finetune_seed)``, ``interaction =
    share(config_x_pretrain)``; the shares sum to 1 over hparam + seed + interaction.

    References
    ----------
    Searle, Casella & McCulloch, *Variance Components*, Wiley 1992, ch. 4; Dodge et al. 2020 (arXiv
    2002.06305).
    """
    vc = variance_components(values, config, pretrain_seed, finetune_seed, design=design)

    def pack(sh: dict) -> dict:
        pre, fine = sh["pretrain_seed"], sh["finetune_seed"]
        seed = None if fine is None else fine + (pre or 0.0)
        return {"hparam": sh["config"], "seed": seed, "pretrain_seed": pre, "finetune_seed": fine,
                "interaction": sh["config_x_pretrain"]}

    return {**pack(vc.shares), "raw": pack(vc.shares_raw), "design": vc.design,
            "estimator": vc.estimator + "; shares of truncated components", "n_runs": vc.n_runs,
            "dropped": len(vc.dropped)}
