"""Straightforward loop implementation of the Multi-Bootstrap: the oracle for ``seedlab.stats.multibootstrap``
in ``test_multibootstrap.py`` and the baseline of ``benchmarks/bench_multibootstrap.py`` (same estimand, same
RNG stream, so equal results).

It follows the structure of google-research/language ``multiberts/multibootstrap.py``: per iteration,
sample seeds, sample examples, then for each sampled seed score each of its fine-tuning runs with a scalar
score function and average (mean over runs within a seed, then mean over sampled seeds). The only change
is the RNG: the draws follow the order documented in ``seedlab.stats.multibootstrap`` (all seed draws
first, then one example draw per iteration) from ``np.random.Generator(np.random.PCG64(rng))``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from seedlab.stats import metrics


def multibootstrap_loop(
    labels,
    preds_baseline,
    seeds_baseline,
    preds_intervention=None,
    seeds_intervention=None,
    *,
    score: str | Callable = "accuracy",
    n_bootstrap: int = 1000,
    paired: bool = False,
    resample_seeds: bool = True,
    resample_examples: bool = True,
    rng: int = 0,
    n_iter: int | None = None,
) -> np.ndarray:
    """Bootstrap samples (n_iter, n_arms): column 0 baseline, column 1 intervention.

    ``n_iter`` (<= n_bootstrap) runs only the first iterations of the same stream: the seed draws are still
    made for all ``n_bootstrap`` iterations first, so iteration b gets exactly the draws it gets in a full run.
    """
    labels = np.asarray(labels)
    pb = np.asarray(preds_baseline)
    sb = np.asarray(seeds_baseline)
    two = preds_intervention is not None
    score_fn = (lambda y, p: metrics.score(score, y, p)) if isinstance(score, str) else score
    m = labels.shape[0]
    n_iter = n_bootstrap if n_iter is None else n_iter

    def seed_to_rows(seeds, keep):
        return {s: [i for i in range(len(seeds)) if seeds[i] == s] for s in keep}

    if two:
        pi = np.asarray(preds_intervention)
        si = np.asarray(seeds_intervention)
        if paired:
            common = sorted(set(sb.tolist()) & set(si.tolist()))
            base_seeds, int_seeds = common, common
        else:
            base_seeds, int_seeds = sorted(set(sb.tolist())), sorted(set(si.tolist()))
        base_rows = seed_to_rows(sb.tolist(), base_seeds)
        int_rows = seed_to_rows(si.tolist(), int_seeds)
    else:
        base_seeds = sorted(set(sb.tolist()))
        base_rows = seed_to_rows(sb.tolist(), base_seeds)

    gen = np.random.Generator(np.random.PCG64(rng))
    if resample_seeds:
        if two and paired:
            idx = gen.integers(0, len(base_seeds), size=(n_bootstrap, len(base_seeds)))
            base_draw, int_draw = idx, idx
        else:
            base_draw = gen.integers(0, len(base_seeds), size=(n_bootstrap, len(base_seeds)))
            int_draw = gen.integers(0, len(int_seeds), size=(n_bootstrap, len(int_seeds))) if two else None

    def score_seeds(preds, rows, seeds, jj):
        scores = []
        for s in seeds:
            seed_scores = [score_fn(labels[jj], preds[i, jj]) for i in rows[s]]
            scores.append(np.mean(seed_scores))  # mean over fine-tuning runs
        return np.mean(scores)  # mean over seeds

    out = []
    for b in range(n_iter):
        if resample_seeds:
            bs = [base_seeds[i] for i in base_draw[b]]
            is_ = [int_seeds[i] for i in int_draw[b]] if two else None
        else:
            bs = base_seeds
            is_ = int_seeds if two else None
        if resample_examples:
            jj = gen.integers(0, m, size=m)
        else:
            jj = np.arange(m)
        row = [score_seeds(pb, base_rows, bs, jj)]
        if two:
            row.append(score_seeds(pi, int_rows, is_, jj))
        out.append(row)
    return np.array(out)
