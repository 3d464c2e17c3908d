"""The Multi-Bootstrap of Sellam et al., "The MultiBERTs: BERT Reproductions for Robustness Analysis",
ICLR 2022 (arXiv 2106.16163); reference code google-research/language ``language/multiberts/multibootstrap.py``.
This is a vectorised re-implementation with the same estimand and resampling scheme.

Estimand: E_seed E_example [score]. Each bootstrap iteration resamples pretraining seeds (paired: one draw
shared by both arms over the seeds both arms have; unpaired: an independent draw per arm) and example
indices (one draw shared by both arms), and scores each arm as the mean over sampled seeds of the mean over
that seed's fine-tuning runs of ``score(labels[J], preds[run, J])``. Fine-tuning runs within a seed are
averaged, not resampled.

RNG stream (documented so that ``tests/stats/loop_reference.py`` reproduces results exactly)::

    rng = np.random.default_rng(rng)      # an int seed s gives np.random.Generator(np.random.PCG64(s))
    # 1. seed draws, all iterations at once (only when resample_seeds):
    #    paired:   seed_idx      = rng.integers(0, S,   size=(n_bootstrap, S))     S = number of common seeds
    #    unpaired: seed_idx_base = rng.integers(0, S_b, size=(n_bootstrap, S_b))   then
    #              seed_idx_int  = rng.integers(0, S_i, size=(n_bootstrap, S_i))   (single-arm: base only)
    #    seed_idx[b, i] indexes the sorted seed list (np.unique of the seed ids).
    # 2. example draws (only when resample_examples), one iteration after another:
    #    for b in range(n_bootstrap): J_b = rng.integers(0, m, size=m)
    #    (drawn here in chunks rng.integers(0, m, size=(chunk, m)), which yields the identical stream)

Vectorisation: per chunk of iterations the example draws become count vectors w_b = bincount(J_b) and the
scores follow from matrix products: accuracy is linear in the correctness vector, so the runs of each seed
are summed first and one (chunk, m) x (m, n_seeds) float32 product (exact: integer counts times integer
sums below 2**24) gives every seed's mean accuracy; F1 and MCC come from confusion counts and Pearson from
weighted moments, each one product per run and count type. Cost O(B m n_seeds) (accuracy) or
O(B m n_runs) in BLAS instead of Python loops; memory is bounded by ``max_chunk_elements``.
Spearman ranks the gathered resamples (``metrics.batched("spearman")``). A user-supplied callable score is
applied per run and iteration (correct but slow).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from seedlab.stats import metrics as _metrics

__all__ = ["multibootstrap", "MultiBootstrapResult", "Estimate", "seed_groups"]

_COUNT_METRICS = ("accuracy", "f1", "mcc", "pearson")


@dataclass(frozen=True)
class Estimate:
    """Point estimate on the full data and the bootstrap distribution's summary.

    ``point``: the score with all examples and all (used) seeds; ``mean`` / ``sd``: of the bootstrap
    samples; ``ci_low`` / ``ci_high``: percentile interval at level 1 - alpha.
    """

    point: float
    mean: float
    sd: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return {"point": self.point, "mean": self.mean, "sd": self.sd, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class MultiBootstrapResult:
    """Result of ``multibootstrap``.

    Attributes:
        baseline, intervention, delta: ``Estimate`` of each arm and of delta = intervention - baseline
            (intervention and delta are None in single-arm mode).
        p_value: share of bootstrap deltas <= 0, floored at 1/n_bootstrap (one-sided test of "intervention
            better"); None in single-arm mode.
        p_threshold: share of bootstrap deltas >= threshold when a threshold was given, else None.
        samples: (n_bootstrap, 2) bootstrap scores [baseline, intervention] ((n_bootstrap, 1) in single-arm
            mode).
        settings: everything needed to reproduce the run (score, ``n_boot`` = n_bootstrap, paired, switches,
            alpha, ``rng_seed`` = the int seed or None, seeds used and dropped per arm, run counts, number of
            examples, RNG order). The key names are those of the analysis result schema.
    """

    baseline: Estimate
    intervention: Estimate | None
    delta: Estimate | None
    p_value: float | None
    p_threshold: float | None
    samples: np.ndarray
    settings: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline.as_dict(),
            "intervention": None if self.intervention is None else self.intervention.as_dict(),
            "delta": None if self.delta is None else self.delta.as_dict(),
            "p_value": self.p_value,
            "p_threshold": self.p_threshold,
            "settings": self.settings,
        }


def seed_groups(seeds, *, keep=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The runs of each pretraining seed: the unit the Multi-Bootstrap resamples.

    Parameters
    ----------
    seeds : array-like of shape (n_runs,)
        Pretraining seed id of each run.
    keep : array-like, optional
        Only these seeds, in this order (default: every distinct seed, sorted).

    Returns
    -------
    uniq : ndarray of shape (S,)
        The seeds.
    groups : list of S ndarrays
        ``groups[i]`` holds the row indices of the runs of ``uniq[i]`` (its fine-tuning runs).

    References
    ----------
    Sellam et al., "The MultiBERTs: BERT Reproductions for Robustness Analysis", ICLR 2022 (arXiv
    2106.16163): seeds are the resampled unit, fine-tuning runs of a seed are averaged.
    """
    seeds = np.asarray(seeds)
    uniq = np.unique(seeds) if keep is None else np.asarray(keep)
    return uniq, [np.flatnonzero(seeds == s) for s in uniq]


# --------------------------------------------------------------------------------------------------
# per-run scores for a chunk of example resamples
# --------------------------------------------------------------------------------------------------


class _CountScorer:
    """Scores all runs on many example resamples from their count vectors W (R, m): scores (R, n_runs)."""

    def __init__(self, name: str, labels: np.ndarray, preds: np.ndarray):
        self.name = name
        m = labels.shape[0]
        # integer counts times 0/1 indicators sum exactly in float32 while m < 2**24
        self.dt = np.float32 if m < 2**24 else np.float64
        dt = self.dt
        if name == "accuracy":
            self.correct = (preds == labels[None, :]).astype(dt).T.copy()  # (m, n)
        elif name == "f1":
            y = labels == 1
            p = preds == 1
            self.tp = (p & y[None, :]).astype(dt).T.copy()
            self.fp = (p & ~y[None, :]).astype(dt).T.copy()
            self.fn = (~p & y[None, :]).astype(dt).T.copy()
        elif name == "mcc":
            classes = np.unique(np.concatenate([np.unique(labels), np.unique(preds)]))
            self.correct = (preds == labels[None, :]).astype(dt).T.copy()
            self.true_ind = np.stack([(labels == c) for c in classes], axis=1).astype(dt)  # (m, K)
            self.pred_ind = [(preds == c).astype(dt).T.copy() for c in classes]  # K x (m, n)
        elif name == "pearson":
            y = labels.astype(np.float64)
            x = preds.astype(np.float64)
            y = y - y.mean()
            x = x - x.mean(axis=1, keepdims=True)
            self.y = y
            self.y2 = y * y
            self.x = x.T.copy()
            self.x2 = (x * x).T.copy()
            self.xy = (x * y[None, :]).T.copy()
        else:  # pragma: no cover - guarded by caller
            raise ValueError(name)
        self.m = m

    def __call__(self, W: np.ndarray) -> np.ndarray:
        m = float(self.m)
        if self.name == "accuracy":
            return (W.astype(self.dt, copy=False) @ self.correct).astype(np.float64) / m
        if self.name == "f1":
            Wd = W.astype(self.dt, copy=False)
            tp = (Wd @ self.tp).astype(np.float64)
            fp = (Wd @ self.fp).astype(np.float64)
            fn = (Wd @ self.fn).astype(np.float64)
            den = 2.0 * tp + fp + fn
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(den > 0, 2.0 * tp / np.where(den > 0, den, 1.0), 0.0)
        if self.name == "mcc":
            Wd = W.astype(self.dt, copy=False)
            correct = (Wd @ self.correct).astype(np.float64)  # (R, n)
            t = (Wd @ self.true_ind).astype(np.float64)  # (R, K)
            p = np.stack([(Wd @ pi).astype(np.float64) for pi in self.pred_ind], axis=-1)  # (R, n, K)
            t = np.broadcast_to(t[:, None, :], p.shape)
            return _metrics._mcc_from_counts(correct, np.full(correct.shape, m), t, p)
        # pearson from weighted moments (float64)
        Wd = W.astype(np.float64, copy=False)
        sy = Wd @ self.y
        syy = Wd @ self.y2
        sx = Wd @ self.x
        sxx = Wd @ self.x2
        sxy = Wd @ self.xy
        cov = sxy - sx * sy[:, None] / m
        vx = sxx - sx * sx / m
        vy = (syy - sy * sy / m)[:, None]
        den = vx * vy
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, cov / np.sqrt(np.where(den > 0, den, 1.0)), np.nan)
        return np.clip(r, -1.0, 1.0)


def _blas_threads(n: int | None):
    """Limit BLAS threads to ``n`` inside the block when ``threadpoolctl`` is installed (optional)."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


def _counts(J: np.ndarray, m: int, dtype=np.int64) -> np.ndarray:
    """Row-wise bincount of index draws J (R, k) -> counts (R, m) of the given dtype."""
    out = np.empty((J.shape[0], m), dtype=dtype)
    for b in range(J.shape[0]):
        out[b] = np.bincount(J[b], minlength=m)
    return out


def _fill_samples(samples, n_bootstrap, chunk, m, rng, resample_examples, score_chunk, full_seed_scores, cols, seed_w):
    """Step 2 of the RNG stream: example draws chunk by chunk, seed-level scores, arm scores per iteration."""
    n_cols = full_seed_scores.shape[0]
    for start in range(0, n_bootstrap, chunk):
        r = min(chunk, n_bootstrap - start)
        if resample_examples:
            # int32 output draws the same values as the default int64 for m < 2**31 (same 32-bit path)
            J = rng.integers(0, m, size=(r, m), dtype=np.int32 if m < 2**31 else np.int64)
            seed_scores = score_chunk(J)  # (r, S_all)
        else:
            seed_scores = np.broadcast_to(full_seed_scores, (r, n_cols))
        for a, (lo, hi) in enumerate(cols):
            if seed_w[a] is None:
                samples[start : start + r, a] = seed_scores[:, lo:hi].mean(axis=1)
            else:
                samples[start : start + r, a] = np.sum(seed_scores[:, lo:hi] * seed_w[a][start : start + r], axis=1)


# --------------------------------------------------------------------------------------------------
# main entry point
# --------------------------------------------------------------------------------------------------


def _prepare_arm(name: str, preds, seeds, m: int, is_float: bool) -> tuple[np.ndarray, np.ndarray]:
    preds = np.asarray(preds)
    seeds = np.asarray(seeds)
    if preds.ndim != 2 or preds.shape[1] != m:
        raise ValueError(f"preds_{name} must have shape (n_runs, {m}) (one column per label), got {preds.shape}")
    if preds.shape[0] == 0:
        raise ValueError(f"preds_{name} has no runs")
    if seeds.shape != (preds.shape[0],):
        raise ValueError(f"seeds_{name} must have one pretraining seed per run, shape ({preds.shape[0]},), got {seeds.shape}")
    if is_float and not np.all(np.isfinite(preds.astype(np.float64))):
        raise ValueError(f"preds_{name} must be finite")
    return preds, seeds


def multibootstrap(
    labels,
    preds_baseline,
    seeds_baseline,
    preds_intervention=None,
    seeds_intervention=None,
    *,
    score: str | Callable[[np.ndarray, np.ndarray], float] = "accuracy",
    n_bootstrap: int = 1000,
    paired: bool = False,
    resample_seeds: bool = True,
    resample_examples: bool = True,
    threshold: float | None = None,
    alpha: float = 0.05,
    rng: int | np.random.Generator | None = 0,
    max_chunk_elements: int = 2**22,
    blas_threads: int | None = 1,
) -> MultiBootstrapResult:
    """Multi-Bootstrap over pretraining seeds and evaluation examples (Sellam et al. 2022).

    Parameters
    ----------
    labels : array-like of shape (m,)
        Gold labels (or regression targets).
    preds_baseline : array-like of shape (n_b, m)
        Predictions of the baseline arm's runs.
    seeds_baseline : array-like of shape (n_b,)
        Pretraining seed id of each baseline run; runs sharing a seed are its fine-tuning runs and are
        averaged, not resampled.
    preds_intervention, seeds_intervention : array-like of shape (n_i, m) and (n_i,), optional
        The same for the intervention arm. Omit both for single-arm mode (an interval for one arm's score).
    score : str or callable, default="accuracy"
        A metric name from ``seedlab.stats.metrics.ALL_METRIC_NAMES`` (vectorised) or a callable
        ``f(labels, preds) -> float`` (applied per run and iteration; slow).
    n_bootstrap : int, default=1000
        Bootstrap iterations B.
    paired : bool, default=False
        True: one seed draw shared by both arms, over the sorted seeds both arms have (runs of other seeds
        are dropped and listed in ``settings``). Valid only when a seed id names the *same* pretrained
        checkpoint in both arms (e.g. an intervention applied to one set of MultiBERTs checkpoints);
        pairing then removes the shared seed effect from the difference. False (the default) draws the
        seeds of each arm independently, which is valid for any two arms: the function cannot tell whether
        equal seed ids are equal checkpoints, and arms that share none (two model sizes, the usual
        seedlab comparison) must not be paired. The example draw is always shared.
    resample_seeds, resample_examples : bool, default=True
        Switch one source of resampling off to see how overconfident a single-source analysis is (at
        least one must stay on).
    threshold : float, optional
        Also report P(delta >= threshold) over the bootstrap.
    alpha : float, default=0.05
        Intervals are the alpha/2 and 1 - alpha/2 percentiles (``np.quantile``, linear interpolation).
    rng : int, numpy.random.Generator or None, default=0
        Seed of ``np.random.default_rng`` (an int s gives ``Generator(PCG64(s))``) or a Generator to draw
        from; the order of draws is in the module docstring.
    max_chunk_elements : int, default=2**22
        Bound on chunk x m (iterations processed at once), to bound memory.
    blas_threads : int or None, default=1
        BLAS threads during the bootstrap loop (via ``threadpoolctl`` when installed; None leaves the
        setting alone). The products are many and medium-sized; on a shared machine a multi-threaded BLAS
        spends more time waiting for cores than computing (measured 3x slower on 2 busy cores), so one
        thread is the default. Results do not depend on it.

    Returns
    -------
    MultiBootstrapResult
        Estimates of each arm and of delta = intervention - baseline, the p-value, the bootstrap samples
        and the settings (``settings["n_boot"]``, ``settings["rng_seed"]``: the B and the int seed used,
        None for a Generator).

    Notes
    -----
    With S sampled seeds s*_1..s*_S and resampled examples J* (size m), an arm's bootstrap score is::

        theta* = (1/S) sum_i  (1/F_{s*_i}) sum_{f in runs of s*_i}  score(labels[J*], preds[f, J*])

    and the point estimate is the same with all seeds and all examples. Intervals are percentiles of
    theta* (or of delta* = theta*_intervention - theta*_baseline); ``p_value = max(mean(delta* <= 0), 1/B)``
    as in the reference code (one-sided test of "intervention better").

    References
    ----------
    Sellam, Yadlowsky, Tenney, Wei, Saphra, D'Amour, Linzen, Bastings, Turc, Eisenstein, Das & Pavlick,
    "The MultiBERTs: BERT Reproductions for Robustness Analysis", ICLR 2022 (arXiv 2106.16163).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    m = labels.shape[0]
    if isinstance(score, str):
        _metrics.batched(score)  # validates the name
        score_name = score
    elif callable(score):
        score_name = getattr(score, "__name__", "callable")
    else:
        raise ValueError(f"score must be a metric name ({', '.join(_metrics.ALL_METRIC_NAMES)}) or a callable")
    is_float = isinstance(score, str) and score in ("pearson", "spearman")
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be an integer >= 1, got {n_bootstrap}")
    n_bootstrap = int(n_bootstrap)
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not (resample_seeds or resample_examples):
        raise ValueError("at least one of resample_seeds and resample_examples must be True")
    pb, sb = _prepare_arm("baseline", preds_baseline, seeds_baseline, m, is_float)
    two_arms = preds_intervention is not None or seeds_intervention is not None
    if two_arms:
        if preds_intervention is None or seeds_intervention is None:
            raise ValueError("give both preds_intervention and seeds_intervention, or neither (single-arm mode)")
        pi, si = _prepare_arm("intervention", preds_intervention, seeds_intervention, m, is_float)
    if threshold is not None and not two_arms:
        raise ValueError("threshold needs an intervention arm (it bounds delta = intervention - baseline)")

    settings: dict[str, Any] = {
        "score": score_name,
        "n_boot": n_bootstrap,
        "paired": bool(paired) if two_arms else None,
        "resample_seeds": bool(resample_seeds),
        "resample_examples": bool(resample_examples),
        "threshold": threshold,
        "alpha": float(alpha),
        "rng_seed": None if rng is None or isinstance(rng, np.random.Generator) else int(rng),
        "n_examples": int(m),
        "rng": "PCG64; seeds (n_boot, S) per arm first, then examples rng.integers(0, m, size=m) per iteration",
    }

    # ---- seed groups --------------------------------------------------------------------------
    if two_arms and paired:
        common = np.intersect1d(np.unique(sb), np.unique(si))
        if common.shape[0] == 0:
            raise ValueError("paired=True but the arms share no pretraining seed; use paired=False")
        seeds_b, groups_b = seed_groups(sb, keep=common)
        seeds_i, groups_i = seed_groups(si, keep=common)
        settings["dropped_seeds_baseline"] = np.setdiff1d(np.unique(sb), common).tolist()
        settings["dropped_seeds_intervention"] = np.setdiff1d(np.unique(si), common).tolist()
    else:
        seeds_b, groups_b = seed_groups(sb)
        if two_arms:
            seeds_i, groups_i = seed_groups(si)
    settings["seeds_baseline"] = seeds_b.tolist()
    settings["n_runs_baseline"] = int(sum(len(g) for g in groups_b))
    if two_arms:
        settings["seeds_intervention"] = seeds_i.tolist()
        settings["n_runs_intervention"] = int(sum(len(g) for g in groups_i))

    # all used runs stacked; a block-diagonal (n_all, S_all) matrix averages run scores into seed means;
    # arm a owns the seed columns cols[a]
    arms = [(pb, groups_b)] + ([(pi, groups_i)] if two_arms else [])
    rows, cols, blocks = [], [], []
    col = 0
    for preds, groups in arms:
        rows.append(preds[np.concatenate(groups)])
        blocks.extend(groups)
        cols.append((col, col + len(groups)))
        col += len(groups)
    all_preds = np.concatenate(rows, axis=0)
    n_all = all_preds.shape[0]
    avg = np.zeros((n_all, col))
    pos = 0
    for j, g in enumerate(blocks):
        avg[pos : pos + len(g), j] = 1.0 / len(g)
        pos += len(g)

    # ---- scorers: seed-mean scores for a chunk of example draws J (r, m) -> (r, S_all) -------------
    if isinstance(score, str):
        batched = _metrics.batched(score)
        full_seed_scores = batched(labels[None, :], all_preds) @ avg

        if score == "accuracy":
            # accuracy is linear in the correctness vector, so sum the runs of each seed first:
            # mean_r (w . c_r) / m = w . (sum_r c_r) / (n_r m). Counts times integer sums are exact in
            # float32 while m * (runs per seed) < 2**24.
            runs_per_seed = np.array([len(g) for g in blocks], dtype=np.float64)
            seed_sum = (all_preds == labels[None, :]).astype(np.float64).T @ (avg > 0)  # (m, S_all) integers
            exact32 = m * runs_per_seed.max() < 2**24
            dt = np.float32 if exact32 else np.float64
            seed_sum = seed_sum.astype(dt)
            denom = runs_per_seed * m

            def score_chunk(J: np.ndarray) -> np.ndarray:
                return (_counts(J, m, dt) @ seed_sum).astype(np.float64) / denom

        elif score in _COUNT_METRICS:
            scorer = _CountScorer(score, labels, all_preds)

            def score_chunk(J: np.ndarray) -> np.ndarray:
                return scorer(_counts(J, m, scorer.dt if score != "pearson" else np.float64)) @ avg

        else:

            def score_chunk(J: np.ndarray) -> np.ndarray:
                return batched(labels[J][:, None, :], all_preds[:, J].transpose(1, 0, 2)) @ avg

    else:
        full_seed_scores = np.array([float(score(labels, all_preds[r])) for r in range(n_all)]) @ avg

        def score_chunk(J: np.ndarray) -> np.ndarray:
            return np.array([[float(score(labels[j], all_preds[r, j])) for r in range(n_all)] for j in J]) @ avg

    # ---- RNG: step 1, seed draws ----------------------------------------------------------------
    gen = np.random.default_rng(rng)  # an int seed s: Generator(PCG64(s)), the documented stream
    S_arms = [len(groups_b)] + ([len(groups_i)] if two_arms else [])
    seed_w = []  # per arm (B, S) resampling weights that sum to 1 per row
    if resample_seeds:
        if two_arms and paired:
            idx = gen.integers(0, S_arms[0], size=(n_bootstrap, S_arms[0]))
            draws = [idx, idx]
        else:
            draws = [gen.integers(0, S, size=(n_bootstrap, S)) for S in S_arms]
        for S, d in zip(S_arms, draws):
            seed_w.append(_counts(d, S, np.float64) / S)
    else:
        seed_w = [None for _ in S_arms]

    # ---- step 2, example draws and scoring, chunk by chunk -------------------------------------------
    per_elem = n_all if isinstance(score, str) and score not in _COUNT_METRICS else 1
    chunk = int(max(1, min(n_bootstrap, max_chunk_elements // max(m * per_elem, 1))))
    samples = np.empty((n_bootstrap, len(S_arms)))
    with _blas_threads(blas_threads):
        _fill_samples(samples, n_bootstrap, chunk, m, gen, resample_examples, score_chunk, full_seed_scores, cols, seed_w)

    # ---- summaries --------------------------------------------------------------------------------
    q = [alpha / 2.0, 1.0 - alpha / 2.0]
    points = [float(full_seed_scores[lo:hi].mean()) for lo, hi in cols]

    def est(point: float, x: np.ndarray) -> Estimate:
        lo, hi = np.quantile(x, q)
        return Estimate(float(point), float(np.mean(x)), float(np.std(x, ddof=1)) if x.shape[0] > 1 else 0.0, float(lo), float(hi))

    base = est(points[0], samples[:, 0])
    if not two_arms:
        return MultiBootstrapResult(base, None, None, None, None, samples, settings)
    inter = est(points[1], samples[:, 1])
    deltas = samples[:, 1] - samples[:, 0]
    delta = est(points[1] - points[0], deltas)
    p = float(np.mean(deltas <= 0))
    p = max(p, 1.0 / n_bootstrap)
    p_thr = None if threshold is None else float(np.mean(deltas >= threshold))
    return MultiBootstrapResult(base, inter, delta, p, p_thr, samples, settings)
