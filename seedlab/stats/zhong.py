"""Instance-level comparison of model sizes: Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained
Language Models Uniformly Better? Comparing Performance at the Instance Level", Findings of ACL 2021
(arXiv 2105.06020; code github.com/ruiqi-zhong/acl2021-instance-level).

Inputs are correctness grids ``c`` of shape (P, F, m): pretraining seeds x fine-tuning seeds x instances,
values in {0, 1} (``SeedGrid.correct`` of a complete grid, see ``SeedGrid.complete()``). Different models
may have different (P, F) but must share the m instances.

* ``instance_accuracy``: acc_k = mean over runs of c[., ., k].
* ``decay_lower_bound``: the random-baseline lower bound on the fraction of instances where the larger
  model is truly worse (their Theorem 1), with a bootstrap correction of the upward bias of the max.
* ``fisher_bh_decay``: the naive alternative: per-instance one-sided Fisher exact tests + Benjamini-Hochberg.
* ``noise_decomposition``: loss = Bias^2 + PretVar + FineVar per instance (their Theorem 2) with the
  unbiased variance estimator, and variance conditioned on bias.
* ``momentum``: correlation of instance-level gains s1->s2 and s2->s3 within buckets of the middle
  model's accuracy, the two gains estimated from independent halves of the middle model's seeds.
* ``finetune_share``: FineVar / (PretVar + FineVar), the fine-tuning seed's share of the seed variance.

Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import false_discovery_control, fisher_exact, pearsonr, spearmanr

__all__ = [
    "instance_accuracy",
    "decay_lower_bound",
    "DecayBound",
    "fisher_bh_decay",
    "noise_decomposition",
    "NoiseDecomposition",
    "momentum",
    "threshold_grid",
    "finetune_share",
]


def _check_c(c, name: str = "c") -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 3:
        raise ValueError(f"{name} must be 3-D (pretraining seeds, fine-tuning seeds, instances), got shape {c.shape}")
    if 0 in c.shape:
        raise ValueError(f"{name} has an empty axis, shape {c.shape}")
    if np.isnan(c).any():
        raise ValueError(
            f"{name} has NaN cells (a ragged seed grid); cut it to a balanced design with SeedGrid.complete() first"
        )
    return c


def _check_binary(c: np.ndarray, name: str) -> None:
    if np.any((c != 0) & (c != 1)):
        raise ValueError(f"{name} must hold correctness values 0 or 1")


def instance_accuracy(c) -> np.ndarray:
    """Instance accuracy: the share of a model's runs that get each instance right.

    Parameters
    ----------
    c : array-like of shape (P, F, m)
        Correctness (0/1) of P pretraining seeds x F fine-tuning seeds on m instances (a complete grid).

    Returns
    -------
    ndarray of shape (m,)
        ``acc_k = (1 / (P F)) sum_{p,f} c[p, f, k]``.

    References
    ----------
    Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language Models Uniformly Better? Comparing
    Performance at the Instance Level", Findings of ACL 2021 (arXiv 2105.06020).
    """
    c = _check_c(c)
    return c.mean(axis=(0, 1))


# --------------------------------------------------------------------------------------------------
# decaying instances: random-baseline lower bound (Theorem 1)
# --------------------------------------------------------------------------------------------------


def threshold_grid(*, step: float = 0.01) -> np.ndarray:
    """The thresholds t of the decay curves Decayhat(t) and Decay'(t).

    Parameters
    ----------
    step : float, default=0.01
        Grid step; must divide 1.

    Returns
    -------
    ndarray of shape (round(1 / step),)
        ``t = -1, -1 + step, ..., -step`` (t in [-1, 0); t = 0 is left out, see ``decay_lower_bound``).

    References
    ----------
    Zhong et al., Findings of ACL 2021 (arXiv 2105.06020), Theorem 1 and appendix (the curves over t).
    """
    n = int(round(1.0 / step))
    if n < 1 or abs(n * step - 1.0) > 1e-9:
        raise ValueError(f"step must divide 1 (e.g. 0.01, 0.05), got {step}")
    return -1.0 + step * np.arange(n)


@dataclass(frozen=True)
class _Units:
    """A model's runs grouped into independent units and split into halves A and B."""

    means: np.ndarray  # (U, m) mean correctness of each unit
    half_a: np.ndarray  # indices of units in half A
    half_b: np.ndarray  # indices of units in half B
    split_by: str  # "pretraining seed" or "fine-tuning run"
    nested: bool  # fine-tuning runs nested in pretraining seeds (P > 1 and F > 1)


def _units(c: np.ndarray, name: str, min_units: int = 2) -> _Units:
    P, F, _ = c.shape
    if P >= 2:
        means, split_by = c.mean(axis=1), "pretraining seed"
    elif F >= 2:
        means, split_by = c[0], "fine-tuning run"
    else:
        raise ValueError(f"{name} has a single run (P=1, F=1); the random baseline needs at least 2 runs to split")
    u = means.shape[0]
    if u < min_units:
        raise ValueError(f"{name} needs at least {min_units} units to split")
    h = u // 2
    return _Units(means, np.arange(h), np.arange(h, u), split_by, P > 1 and F > 1)


@dataclass(frozen=True)
class DecayBound:
    """Result of ``decay_lower_bound``.

    Attributes:
        t: thresholds (T,), in [-1, 0).
        decay_hat: Decayhat(t) = fraction of instances with dhat_k <= t.
        decay_baseline: Decay'(t) = fraction with d'_k <= t (random baseline, zero true difference).
        difference: decay_hat - decay_baseline.
        max_difference: raw max over t of ``difference`` (upward biased).
        argmax_t: the threshold attaining it (smallest such t).
        bias: bootstrap estimate of the upward bias of the max: mean(max*) - max_difference.
        estimate: bias-corrected estimate, max_difference - bias (may be < 0).
        lower_bound: max(estimate, 0): the reported lower bound on the fraction of decaying instances.
        bootstrap_max: (n_bootstrap,) the max over t of each bootstrap replicate's curve difference.
        n_bootstrap: number of bootstrap replicates (instances resampled).
        dhat, dprime: (m,) the per-instance differences behind the curves.
        n_instances: m.
        split: per model, how the runs were split into halves A and B.
        caveat: warning text when the independence assumption of Theorem 1 is weakened, else None.
    """

    t: np.ndarray
    decay_hat: np.ndarray
    decay_baseline: np.ndarray
    difference: np.ndarray
    max_difference: float
    argmax_t: float
    bias: float
    estimate: float
    lower_bound: float
    bootstrap_max: np.ndarray
    n_bootstrap: int
    dhat: np.ndarray
    dprime: np.ndarray
    n_instances: int
    split: dict = field(default_factory=dict)
    caveat: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (curves as lists)."""
        return {
            "t": self.t.tolist(),
            "decay_hat": self.decay_hat.tolist(),
            "decay_baseline": self.decay_baseline.tolist(),
            "max_difference": self.max_difference,
            "argmax_t": self.argmax_t,
            "bias": self.bias,
            "estimate": self.estimate,
            "lower_bound": self.lower_bound,
            "n_bootstrap": self.n_bootstrap,
            "n_instances": self.n_instances,
            "split": self.split,
            "caveat": self.caveat,
        }


def _threshold_index(d: np.ndarray, step: float, n_t: int) -> np.ndarray:
    """Index j of the smallest threshold t_j = -1 + j step with d <= t_j (n_t when d >= 0 side: none)."""
    x = np.round((d + 1.0) / step, 6)
    return np.clip(np.ceil(x), 0, n_t).astype(np.int64)


def _curves(d: np.ndarray, weights: np.ndarray | None, step: float, n_t: int) -> np.ndarray:
    """Weighted empirical CDFs of the rows of d (R, m) at the T thresholds: (R, T)."""
    R, m = d.shape
    idx = _threshold_index(d, step, n_t) + (n_t + 1) * np.arange(R)[:, None]
    w = None if weights is None else weights.ravel()
    counts = np.bincount(idx.ravel(), weights=w, minlength=R * (n_t + 1)).reshape(R, n_t + 1)
    tot = m if weights is None else weights.sum(axis=1, keepdims=True)
    return np.cumsum(counts, axis=1)[:, :n_t] / tot


def decay_lower_bound(
    c1,
    c2,
    *,
    step: float = 0.01,
    n_bootstrap: int = 200,
    rng: int | np.random.Generator | None = None,
    names: tuple[str, str] = ("c1", "c2"),
) -> DecayBound:
    """Lower bound on the fraction of instances where model 2 (the larger) is truly worse than model 1.

    Parameters
    ----------
    c1, c2 : array-like of shape (P1, F1, m) and (P2, F2, m)
        Correctness (0/1) grids of the two models on the same m instances (complete grids).
    step : float, default=0.01
        Step of the threshold grid t in [-1, 0) (``threshold_grid``).
    n_bootstrap : int, default=200
        Instance-bootstrap replicates for the bias correction of the max.
    rng : int, numpy.random.Generator or None, default=None
        Seed of ``np.random.default_rng``, or a Generator.
    names : (str, str), default=("c1", "c2")
        What the caveat calls the two models (their names, in an analysis).

    Returns
    -------
    DecayBound
        The curves, the raw and bias-corrected maximum gap, the lower bound and how the runs were split.

    Notes
    -----
    Zhong et al. 2021, Theorem 1 and appendix. With c1 (P1, F1, m) and c2 (P2, F2, m):

    * dhat_k = acc2_k - acc1_k from all runs of each model.
    * Random baseline with the same noise and zero true difference: each model's runs are split into halves
      A and B **separately** (so different shapes are fine), and
      ``d'_k = (mean_A c1 + mean_A c2)/2 - (mean_B c1 + mean_B c2)/2``.
      Halves are split by pretraining seed when P >= 2 (the first ``P // 2`` sorted pretraining seeds
      against the rest, as their 0-4 vs 5-9), so each half carries the same seed-tree noise as dhat;
      with P == 1 the fine-tuning runs are split instead (first ``F // 2`` vs rest). With an odd count,
      half B has one unit more; the baseline is then slightly noisier than dhat, which only lowers the bound.
    * Decayhat(t) = (1/m) #{k: dhat_k <= t}, Decay'(t) = (1/m) #{k: d'_k <= t}; for every t <= 0,
      true Decay >= E[Decayhat(t) - Decay'(t)] where Decay is the fraction with acc2_k < acc1_k.
    * **Threshold grid**: t in [-1, 0) with step ``step`` (0.01: t = -1.00, -0.99, ..., -0.01). "Decaying"
      means the larger model is worse, so only t < 0 is meaningful; t = 0 is left out because exact ties
      dhat_k = 0 (e.g. instances both models always get right) would enter both curves.
    * The raw estimate is ``max_t (Decayhat(t) - Decay'(t))``, which is biased upward (a max of noisy curves).
    * **Bootstrap bias correction** (their appendix: the bias can reach 10-15% of the value): draw
      ``n_bootstrap`` replicates that resample the instances with replacement (the pair (dhat_k, d'_k) moves
      together, seeds held fixed), recompute both curves and the max of their difference, estimate the
      bias as ``mean(max*) - max`` and report ``estimate = max - bias = 2 max - mean(max*)`` and
      ``lower_bound = max(estimate, 0)``. Because each curve is a mean over instances, the bootstrap
      curves are unbiased for the observed ones and ``mean(max*) >= max`` (Jensen), so the correction
      only ever lowers the estimate. Resampling pretraining seeds within halves was tried and rejected:
      with the few seeds per half of real designs (2-5), duplicated seeds inflate the noise of the half
      means, which lowers ``max*`` and made the "correction" raise the estimate in simulations.
      RNG: one ``rng.integers(0, m, size=(chunk, m))`` per chunk of replicates.

    A ``caveat`` is set when runs are nested (fine-tuning runs share a pretraining seed): the theorem
    assumes independent runs, and nesting weakens that assumption; also when a model has a single
    pretraining seed (its pretraining noise is then not represented by the baseline).

    References
    ----------
    Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language Models Uniformly Better? Comparing
    Performance at the Instance Level", Findings of ACL 2021 (arXiv 2105.06020), Theorem 1 and appendix.
    """
    c1 = _check_c(c1, "c1")
    c2 = _check_c(c2, "c2")
    _check_binary(c1, "c1")
    _check_binary(c2, "c2")
    if c1.shape[2] != c2.shape[2]:
        raise ValueError(f"c1 and c2 must cover the same instances: {c1.shape[2]} != {c2.shape[2]}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    t = threshold_grid(step=step)
    n_t = t.shape[0]
    m = c1.shape[2]
    u1, u2 = _units(c1, "c1"), _units(c2, "c2")

    def half_diff(u: _Units) -> np.ndarray:
        return u.means[u.half_a].mean(axis=0) - u.means[u.half_b].mean(axis=0)

    # balanced grids: the mean of the unit means is the mean over all runs
    dhat = (u2.means.mean(axis=0) - u1.means.mean(axis=0))[None, :]
    dprime = (0.5 * (half_diff(u1) + half_diff(u2)))[None, :]
    dec_hat = _curves(dhat, None, step, n_t)[0]
    dec_base = _curves(dprime, None, step, n_t)[0]
    diff = dec_hat - dec_base
    jmax = int(np.argmax(diff))
    max_diff = float(diff[jmax])

    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    chunk = max(1, min(n_bootstrap, 2**21 // max(m, 1)))
    boot_max = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, chunk):
        r = min(chunk, n_bootstrap - start)
        ii = gen.integers(0, m, size=(r, m)) + m * np.arange(r)[:, None]
        wi = np.bincount(ii.ravel(), minlength=r * m).reshape(r, m).astype(np.float64)
        dh = np.broadcast_to(dhat, (r, m))
        dp = np.broadcast_to(dprime, (r, m))
        d_star = _curves(dh, wi, step, n_t) - _curves(dp, wi, step, n_t)
        boot_max[start : start + r] = d_star.max(axis=1)

    bias = float(boot_max.mean() - max_diff)
    estimate = max_diff - bias

    caveats = []
    if u1.nested or u2.nested:
        caveats.append(
            "runs are nested (fine-tuning runs share pretraining seeds): Theorem 1 assumes independent runs, "
            "so the guarantee is weakened (halves were split by pretraining seed to keep the seed-tree noise "
            "of the baseline equal to that of dhat)"
        )
    for name, u in zip(names, (u1, u2)):
        if u.split_by == "fine-tuning run":
            caveats.append(
                f"{name} has a single pretraining seed: its halves split fine-tuning runs, so pretraining-seed "
                "noise is not represented and the bound is conditional on that pretrained model"
            )
    split = {}
    for name, u in (("c1", u1), ("c2", u2)):
        split[name] = {
            "split_by": u.split_by,
            "half_a": u.half_a.tolist(),
            "half_b": u.half_b.tolist(),
        }
    return DecayBound(
        t=t,
        decay_hat=dec_hat,
        decay_baseline=dec_base,
        difference=diff,
        max_difference=max_diff,
        argmax_t=float(t[jmax]),
        bias=bias,
        estimate=float(estimate),
        lower_bound=float(max(estimate, 0.0)),
        bootstrap_max=boot_max,
        n_bootstrap=int(n_bootstrap),
        dhat=dhat[0],
        dprime=dprime[0],
        n_instances=int(m),
        split=split,
        caveat="; ".join(caveats) if caveats else None,  # each part without "; ": readers split on it
    )


# --------------------------------------------------------------------------------------------------
# the naive alternative: Fisher + BH
# --------------------------------------------------------------------------------------------------


def fisher_bh_decay(c1, c2, *, alpha: float = 0.05) -> dict:
    """Per-instance one-sided Fisher exact test (model 2 worse than model 1) + Benjamini-Hochberg.

    Parameters
    ----------
    c1, c2 : array-like of shape (P1, F1, m) and (P2, F2, m)
        Correctness (0/1) grids of the two models on the same instances.
    alpha : float, default=0.05
        False discovery rate of the Benjamini-Hochberg procedure.

    Returns
    -------
    dict
        ``fraction``, ``n_declared``, ``n_instances``, ``declared`` (m,) bool, ``pvalues`` (m,),
        ``adjusted`` (m,), ``alpha``.

    Notes
    -----
    For instance k, with a_s = number of correct runs of model s out of n_s = P_s F_s, the 2x2 table
    ``[[a2, n2 - a2], [a1, n1 - a1]]`` is tested with ``scipy.stats.fisher_exact(alternative="less")``
    (odds of model 2 being correct lower than model 1's). The m p-values are adjusted with
    Benjamini-Hochberg (``scipy.stats.false_discovery_control(method="bh")``) and instances with adjusted
    p <= alpha are declared decaying. This is the baseline Zhong et al. improve on: it treats runs as
    independent Bernoulli trials (ignoring that fine-tuning runs share pretraining seeds) and has little
    power with few runs, so it usually finds far fewer decaying instances than the random-baseline bound.

    References
    ----------
    Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language Models Uniformly Better? Comparing
    Performance at the Instance Level", Findings of ACL 2021 (arXiv 2105.06020): the naive
    baseline;
    Benjamini & Hochberg, "Controlling the False Discovery Rate", JRSS B 57(1), 1995.
    """
    c1 = _check_c(c1, "c1")
    c2 = _check_c(c2, "c2")
    _check_binary(c1, "c1")
    _check_binary(c2, "c2")
    if c1.shape[2] != c2.shape[2]:
        raise ValueError(f"c1 and c2 must cover the same instances: {c1.shape[2]} != {c2.shape[2]}")
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    n1 = c1.shape[0] * c1.shape[1]
    n2 = c2.shape[0] * c2.shape[1]
    a1 = np.rint(c1.sum(axis=(0, 1))).astype(np.int64)
    a2 = np.rint(c2.sum(axis=(0, 1))).astype(np.int64)
    # at most (n1 + 1)(n2 + 1) distinct tables: test each once
    pairs, inv = np.unique(np.stack([a1, a2], axis=1), axis=0, return_inverse=True)
    pv_unique = np.array(
        [fisher_exact([[b, n2 - b], [a, n1 - a]], alternative="less").pvalue for a, b in pairs]
    )
    pvalues = pv_unique[inv.ravel()]
    adjusted = false_discovery_control(pvalues, method="bh")
    declared = adjusted <= alpha
    return {
        "fraction": float(declared.mean()),
        "n_declared": int(declared.sum()),
        "n_instances": int(pvalues.shape[0]),
        "declared": declared,
        "pvalues": pvalues,
        "adjusted": adjusted,
        "alpha": float(alpha),
    }


# --------------------------------------------------------------------------------------------------
# noise decomposition (Theorem 2)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseDecomposition:
    """Per-instance loss decomposition ``loss = bias2 + pretrain_var + finetune_var`` (arrays (m,)).

    ``means`` has the means over instances of each component; ``conditioned`` lists buckets of instances
    (by ``bucket_by``) with the mean components in each: "variance conditioned on bias".
    """

    accuracy: np.ndarray
    loss: np.ndarray
    pretrain_var: np.ndarray
    finetune_var: np.ndarray
    bias2: np.ndarray
    means: dict
    conditioned: list
    bucket_by: str
    P: int
    F: int


def _buckets(x: np.ndarray, width: float) -> tuple[np.ndarray, int]:
    n_b = int(round(1.0 / width))
    if n_b < 1 or abs(n_b * width - 1.0) > 1e-9:
        raise ValueError(f"bucket_width must divide 1 (e.g. 0.1, 0.05), got {width}")
    idx = np.clip(np.floor(np.round(np.clip(x, 0.0, 1.0) / width, 9)), 0, n_b - 1).astype(np.int64)
    return idx, n_b


def noise_decomposition(c, *, bucket_by: str = "bias2", bucket_width: float = 0.1) -> NoiseDecomposition:
    """Bias-variance decomposition of each instance's loss over the seed tree (Zhong et al. 2021, Theorem 2).

    Parameters
    ----------
    c : array-like of shape (P, F, m)
        Correctness (0/1) of P >= 2 pretraining seeds x F >= 2 fine-tuning seeds on m instances.
    bucket_by : {"bias2", "accuracy"}, default="bias2"
        The variable by which instances are bucketed for the variance conditioned on bias.
    bucket_width : float, default=0.1
        Bucket width on [0, 1]; must divide 1.

    Returns
    -------
    NoiseDecomposition
        Per-instance arrays of each component, their means over instances and the bucketed means.

    Notes
    -----
    For instance k with correctness c[p, f] (P pretraining seeds x F fine-tuning seeds)::

        L        = E[(1 - c)^2]               (= 1 - acc for 0/1 correctness)
        PretVar  = Var_p[ E_f c ]
        FineVar  = E_p[ Var_f c ]
        Bias^2   = L - PretVar - FineVar

    Estimators (unbiased; the authors' ``decompose_bias_variance.py``):

    * ``Lhat = mean over all runs of (1 - c)^2``;
    * ``FineVarhat = (1/P) sum_p s_p^2`` with ``s_p^2`` the unbiased (ddof=1) variance of the F runs of seed p;
    * ``PretVarhat = 1/(P-1) sum_p (muhat_p - muhat)^2 - (1/P) sum_p sigmahat_p`` where muhat_p is the mean of
      seed p's runs and ``sigmahat_p = s_p^2 / F`` estimates Var(muhat_p) (METHODS.md writes the number of
      groups as F; here the groups are the P pretraining seeds). Subtracting the mean sigmahat removes the
      fine-tuning noise that inflates the spread of the seed means; the naive plug-in ``Var_p(muhat_p)`` is
      biased upward by about FineVar / F;
    * ``Bias^2hat = Lhat - PretVarhat - FineVarhat`` (not the square of a mean).

    PretVarhat and Bias^2hat can be negative for single instances (unbiased, not truncated); their means over
    instances are what the paper reports.

    Variance conditioned on bias: instances are bucketed by ``bucket_by`` ("bias2": estimated Bias^2, or
    "accuracy"), clipped to [0, 1], in buckets of width ``bucket_width``; each bucket reports n and the mean
    of each component.

    References
    ----------
    Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language Models Uniformly Better? Comparing
    Performance at the Instance Level", Findings of ACL 2021 (arXiv 2105.06020), Theorem 2;
    the authors' ``decompose_bias_variance.py``.
    """
    c = _check_c(c)
    P, F, m = c.shape
    if P < 2 or F < 2:
        raise ValueError(
            f"noise_decomposition needs at least 2 pretraining seeds and 2 fine-tuning seeds per pretraining "
            f"seed (P >= 2, F >= 2), got P={P}, F={F}"
        )
    if bucket_by not in ("bias2", "accuracy"):
        raise ValueError(f"bucket_by must be 'bias2' or 'accuracy', got {bucket_by!r}")
    acc = c.mean(axis=(0, 1))
    loss = np.mean((1.0 - c) ** 2, axis=(0, 1))
    mu_p = c.mean(axis=1)  # (P, m)
    s2_p = c.var(axis=1, ddof=1)  # (P, m)
    fine = s2_p.mean(axis=0)
    pret = mu_p.var(axis=0, ddof=1) - (s2_p / F).mean(axis=0)
    bias2 = loss - pret - fine

    key = bias2 if bucket_by == "bias2" else acc
    idx, n_b = _buckets(key, bucket_width)
    conditioned = []
    for b in range(n_b):
        sel = idx == b
        n = int(sel.sum())
        conditioned.append(
            {
                "lo": round(b * bucket_width, 10),
                "hi": round((b + 1) * bucket_width, 10),
                "n": n,
                "pretrain_var": float(pret[sel].mean()) if n else float("nan"),
                "finetune_var": float(fine[sel].mean()) if n else float("nan"),
                "bias2": float(bias2[sel].mean()) if n else float("nan"),
            }
        )
    means = {
        "loss": float(loss.mean()),
        "bias2": float(bias2.mean()),
        "pretrain_var": float(pret.mean()),
        "finetune_var": float(fine.mean()),
        "accuracy": float(acc.mean()),
    }
    return NoiseDecomposition(
        accuracy=acc,
        loss=loss,
        pretrain_var=pret,
        finetune_var=fine,
        bias2=bias2,
        means=means,
        conditioned=conditioned,
        bucket_by=bucket_by,
        P=P,
        F=F,
    )


# --------------------------------------------------------------------------------------------------
# momentum
# --------------------------------------------------------------------------------------------------


def _corr(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if x.shape[0] < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return float(pearsonr(x, y)[0]), float(spearmanr(x, y)[0])


def momentum(c1, c2, c3, *, bucket_width: float = 0.1, split: str = "middle") -> dict:
    """Momentum of instance-level gains across sizes s1 < s2 < s3 (Zhong et al. 2021, section 6).

    Parameters
    ----------
    c1, c2, c3 : array-like of shape (P_s, F_s, m)
        Correctness (0/1) grids of three models s1 < s2 < s3 on the same instances; c2 needs P >= 2.
    bucket_width : float, default=0.1
        Width of the buckets of the middle model's accuracy; must divide 1.
    split : {"middle", "all"}, default="middle"
        Split only the middle model into halves, or every model.

    Returns
    -------
    dict
        ``buckets`` (per bucket: lo, hi, n, pearson, spearman), ``overall``, ``weighted_pearson``,
        ``weighted_spearman``, ``d12``, ``d23``, ``bucket_variable``, ``split``, ``middle_halves``.

    Notes
    -----
    Does an instance that improves from s1 to s2 keep improving from s2 to s3? Estimating both gains from
    the same runs of s2 builds in a negative correlation (s2's noise enters dAcc(s1->s2) with + and
    dAcc(s2->s3) with -: regression to the mean), so the middle model's runs are split by pretraining seed
    into two independent halves: A = the first ``P2 // 2`` sorted pretraining seeds, B = the rest.

    * bucket variable: acc2_A (middle model, half A), buckets of width ``bucket_width`` on [0, 1] (1.0 goes
      in the last bucket);
    * ``split="middle"`` (default): dAcc(s1->s2) = acc2_A - acc1 (all of s1's runs) and
      dAcc(s2->s3) = acc3 (all of s3's runs) - acc2_B. s1 and s3 each enter one difference only, so their
      noise is not shared and all their runs are used;
    * ``split="all"``: every model is split the same way: dAcc(s1->s2) = acc2_A - acc1_A and
      dAcc(s2->s3) = acc3_B - acc2_B (requires P >= 2 for all three).

    The two differences then share no run. Within each bucket: Pearson and Spearman correlation of the two
    gains, with n (NaN when n < 3 or a side is constant); ``overall`` correlates all instances without
    bucketing; ``weighted_pearson`` / ``weighted_spearman`` average the defined bucket correlations
    weighted by n.

    Requires the middle model to have P >= 2 (halves by fine-tuning run would share the pretraining seed's
    noise and not be independent).

    References
    ----------
    Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language Models Uniformly Better? Comparing
    Performance at the Instance Level", Findings of ACL 2021 (arXiv 2105.06020), section 6.
    """
    c1 = _check_c(c1, "c1")
    c2 = _check_c(c2, "c2")
    c3 = _check_c(c3, "c3")
    if not (c1.shape[2] == c2.shape[2] == c3.shape[2]):
        raise ValueError(f"c1, c2, c3 must cover the same instances: {c1.shape[2]}, {c2.shape[2]}, {c3.shape[2]}")
    if split not in ("middle", "all"):
        raise ValueError(f"split must be 'middle' or 'all', got {split!r}")
    need = (("c2", c2),) if split == "middle" else (("c1", c1), ("c2", c2), ("c3", c3))
    for name, c in need:
        if c.shape[0] < 2:
            raise ValueError(
                f"momentum needs at least 2 pretraining seeds in {name} to form independent halves, got P={c.shape[0]}"
            )

    def halves(c):
        h = c.shape[0] // 2
        return c[:h].mean(axis=(0, 1)), c[h:].mean(axis=(0, 1)), h

    acc2_a, acc2_b, h2 = halves(c2)
    if split == "middle":
        d12 = acc2_a - c1.mean(axis=(0, 1))
        d23 = c3.mean(axis=(0, 1)) - acc2_b
    else:
        acc1_a, _, _ = halves(c1)
        _, acc3_b, _ = halves(c3)
        d12 = acc2_a - acc1_a
        d23 = acc3_b - acc2_b

    idx, n_b = _buckets(acc2_a, bucket_width)
    buckets = []
    wp = ws = wn = 0.0
    for b in range(n_b):
        sel = idx == b
        n = int(sel.sum())
        r, rho = _corr(d12[sel], d23[sel])
        buckets.append(
            {"lo": round(b * bucket_width, 10), "hi": round((b + 1) * bucket_width, 10), "n": n, "pearson": r, "spearman": rho}
        )
        if np.isfinite(r):
            wp += n * r
            ws += n * rho
            wn += n
    r_all, rho_all = _corr(d12, d23)
    return {
        "buckets": buckets,
        "overall": {"n": int(d12.shape[0]), "pearson": r_all, "spearman": rho_all},
        "weighted_pearson": wp / wn if wn else float("nan"),
        "weighted_spearman": ws / wn if wn else float("nan"),
        "d12": d12,
        "d23": d23,
        "bucket_variable": acc2_a,
        "split": split,
        "middle_halves": {"half_a": list(range(h2)), "half_b": list(range(h2, c2.shape[0]))},
    }


# --------------------------------------------------------------------------------------------------
# the fine-tuning seed's share of the seed variance
# --------------------------------------------------------------------------------------------------


def finetune_share(pretrain_var: float | None, finetune_var: float | None) -> float | None:
    """The fine-tuning seed's share of the seed variance, FineVar / (PretVar + FineVar).

    Parameters
    ----------
    pretrain_var, finetune_var : float or None
        Means over instances of PretVar and FineVar (``NoiseDecomposition.means``).

    Returns
    -------
    float or None
        ``finetune_var / (pretrain_var + finetune_var)``; None when either is None or negative (the
        unbiased PretVar estimate can be; a share of a negative variance means nothing) or both are 0.

    Notes
    -----
    With Zhong et al.'s decomposition ``loss = Bias^2 + PretVar + FineVar`` the seed variance is
    ``PretVar + FineVar``; this is the part of it that a new fine-tuning seed alone moves (1: only the
    fine-tuning seed matters, 0: only the pretraining seed).

    References
    ----------
    Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language Models Uniformly Better? Comparing
    Performance at the Instance Level", Findings of ACL 2021 (arXiv 2105.06020), Theorem 2.
    """
    pv, fv = pretrain_var, finetune_var
    if pv is None or fv is None or pv < 0 or fv < 0 or pv + fv <= 0:
        return None
    return float(fv / (pv + fv))
