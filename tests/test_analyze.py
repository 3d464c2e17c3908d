"""What `seedlab analyze` computes, pinned section by section: the analysis of a real SQLite store equals the
seedlab.stats functions applied by hand to the runs that were logged (same options, same RNG seeds)."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from seedlab.analysis.analyze import AnalysisOptions, analyze
from seedlab.analysis.loader import load_experiment
from seedlab.stats import agreement as ag
from seedlab.stats.expected_max import expected_max_curve
from seedlab.stats.metrics import accuracy
from seedlab.stats.multibootstrap import multibootstrap
from seedlab.stats.representations import pairwise_layer_distances
from seedlab.stats.simulate import simulate_experiment
from seedlab.stats.zhong import decay_lower_bound, finetune_share, instance_accuracy, noise_decomposition
from store_builder import build_store, representations_for

MODELS = ("tiny", "mini")  # smallest first, the analysis's order
SEED, B, DECAY_B = 3, 40, 15


def close(got, want):
    """Equal up to float rounding (None where the analysis writes NaN as undefined)."""
    want = np.asarray(want, dtype=float)
    got = np.asarray([np.nan if g is None else g for g in np.ravel(got)], dtype=float).reshape(want.shape)
    assert np.allclose(got, want, rtol=0, atol=1e-12, equal_nan=True), (got, want)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    table, _ = simulate_experiment(n_models=2, model_names=list(MODELS), P=2, F=2, m=80, rng=7, task="sst2")
    reps = representations_for(table, layers=3, hidden=6, rng=1)
    uri = build_store(tmp_path_factory.mktemp("pinned"), "pinned", [table], {"sst2": reps})
    options = AnalysisOptions(compare=MODELS, n_bootstrap=B, seed=SEED, decay_bootstrap=DECAY_B)
    result = analyze(load_experiment("pinned", uri), options)
    return table, reps, result["tasks"]["sst2"]


def runs(table, model):
    rows = table.model == model  # simulated in (pretraining seed, fine-tuning seed) order, as the loader sorts
    return table.predictions[rows], table.probs[rows], table.pretrain_seed[rows], table.run_ids[rows]


def test_models_metrics_and_agreement(case):
    table, _, t = case
    assert list(t["models"]) == list(MODELS)
    for model in MODELS:
        preds, probs, _, _ = runs(table, model)
        acc = [accuracy(table.labels, p) for p in preds]
        m = t["models"][model]
        s = m["metrics"]["accuracy"]
        close(s["values"], acc)
        close([s["mean"], s["sd"], s["min"], s["max"]], [np.mean(acc), np.std(acc), np.min(acc), np.max(acc)])
        close([m["consistency_all"], m["agreement_pairwise"], m["fleiss_kappa"]],
              [ag.consistency_all(preds), ag.agreement_pairwise(preds), ag.fleiss_kappa(preds)])
        want = ag.instability_measures(preds, probs, acc)
        close([m["instability"][k] for k in ("sd", "pd", "jsd", "one_minus_fleiss_kappa")],
              [want[k] for k in ("sd", "pd", "jsd", "one_minus_fleiss_kappa")])
        close(m["agreement_matrix"]["matrix"], ag.agreement_matrix(preds))
        v = ag.subsample_insensitivity(preds, probs, table.labels, rng=np.random.default_rng(SEED))
        close([t["validity"][model]["full"][k] for k in v["full"]], list(v["full"].values()))
        close(t["validity"][model]["fractions"]["0.5"]["pd"]["values"], v["fractions"][0.5]["pd"]["values"])


def test_zhong_sections(case):
    table, _, t = case
    z = t["zhong"]
    grids = {model: table.grid(model).correct for model in MODELS}
    for model in MODELS:
        close(z["instance_accuracy"][model], instance_accuracy(grids[model]))
        means = noise_decomposition(grids[model]).means
        close([z["noise"][model]["means"][k] for k in means], list(means.values()))
        assert z["noise"][model]["finetune_share"] == finetune_share(means["pretrain_var"], means["finetune_var"])
    rng = np.random.default_rng(SEED)  # one stream over the ordered pairs, in order
    assert [(d["from"], d["to"]) for d in z["decay"]] == list(permutations(MODELS, 2))
    for d, (small, large) in zip(z["decay"], permutations(MODELS, 2)):
        want = decay_lower_bound(grids[small], grids[large], n_bootstrap=DECAY_B, rng=rng)
        close([d["max_difference"], d["bias"], d["lower_bound"]], [want.max_difference, want.bias, want.lower_bound])
        close(d["decay_hat"], want.decay_hat)
    assert z["momentum"] == []  # two models: no triple


def test_representations(case):
    table, reps, t = case
    for model in MODELS:
        _, _, _, run_ids = runs(table, model)
        stacked = np.stack([reps[r] for r in run_ids]).astype(np.float64)
        for measure in ("svcca", "procrustes", "cka"):
            got = np.asarray(t["representations"][model]["by_layer"][measure], dtype=float)
            want = pairwise_layer_distances(stacked, measure=measure)
            assert got.shape == want.shape == (stacked.shape[1],)  # one distance per layer
            assert np.isfinite(got).all()
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_multibootstrap_and_expected_max(case):
    table, _, t = case
    for model in MODELS:
        preds, _, seeds, _ = runs(table, model)
        want = multibootstrap(table.labels, preds, seeds, n_bootstrap=B, rng=SEED).baseline
        close([t["multibootstrap"]["models"][model][k] for k in ("point", "mean", "sd", "ci_low", "ci_high")],
              [want.point, want.mean, want.sd, want.ci_low, want.ci_high])
        curve = expected_max_curve([accuracy(table.labels, p) for p in preds], n_bootstrap=B, rng=SEED)
        close(t["expected_max"][model]["expected_max"], curve.expected_max)
        close(t["expected_max"][model]["ci_high"], curve.ci_high)
    (pb, _, sb, _), (pi, _, si, _) = runs(table, "tiny"), runs(table, "mini")
    comparison = t["multibootstrap"]["comparison"]
    assert comparison["paired"] is False  # the default: different sizes share no checkpoint
    for scheme, (seeds, examples) in {"seeds_and_examples": (True, True), "seeds_only": (True, False),
                                      "examples_only": (False, True)}.items():
        want = multibootstrap(table.labels, pb, sb, pi, si, n_bootstrap=B, rng=SEED, resample_seeds=seeds,
                              resample_examples=examples)
        got = comparison[scheme]
        close([got["delta"]["point"], got["delta"]["ci_low"], got["delta"]["ci_high"], got["p_value"]],
              [want.delta.point, want.delta.ci_low, want.delta.ci_high, want.p_value])


def _pair_spread(values):
    return [np.mean(values), np.std(values), np.min(values), np.max(values)]


def test_the_paper_s_pairwise_consistency(case):
    """Bui/Zhou et al.'s readings, one per pair of runs, recomputed by a loop over the pairs."""
    from itertools import combinations

    table, _, t = case
    for model in MODELS:
        preds, _, _, _ = runs(table, model)
        same = [np.mean(preds[i] == preds[j]) for i, j in combinations(range(len(preds)), 2)]
        both = [np.mean((preds[i] == table.labels) & (preds[j] == table.labels))
                for i, j in combinations(range(len(preds)), 2)]
        got = t["models"][model]["pairwise_consistency"]
        assert got["n_runs"] == len(preds) and got["n_pairs"] == len(same)
        s, c = got["consistency"], got["correct_consistency"]
        close([s["mean"], s["sd"], s["min"], s["max"]], _pair_spread(same))
        close([c["mean"], c["sd"], c["min"], c["max"]], _pair_spread(both))
        close(s["mean"], t["models"][model]["agreement_pairwise"])


def test_the_pearson_between_runs_of_a_regression_task(tmp_path):
    from itertools import combinations

    from scipy.stats import pearsonr

    from seedlab.analysis.render import render_summary
    from store_builder import regression_table

    loaded = load_experiment("reg", build_store(tmp_path, "reg", [regression_table("stsb", ["tiny"], P=1, F=4, m=30,
                                                                                   rng=2)]))
    values = loaded.tables["stsb"].predictions  # as stored (float32), which is what the analysis reads
    result = analyze(loaded, AnalysisOptions(n_bootstrap=B, seed=SEED, decay_bootstrap=DECAY_B))
    got = result["tasks"]["stsb"]["models"]["tiny"]["pairwise_consistency"]
    r = [pearsonr(values[i].astype(np.float64), values[j].astype(np.float64)).statistic
         for i, j in combinations(range(4), 2)]
    assert got["n_pairs"] == 6 and got["n_undefined"] == 0 and "consistency" not in got
    close([got["pearson"][k] for k in ("mean", "sd", "min", "max")], _pair_spread(r))
    text = render_summary(result)
    assert "Pearson between runs" in text and f"{np.mean(r):.4f} \u00b1 {np.std(r):.4f}" in text


def test_each_decay_note_is_printed_once_whatever_the_number_of_pairs(tmp_path):
    from seedlab.analysis.render import render_summary

    names = ["a", "b", "c"]  # one pretraining seed each: every ordered pair carries both models' notes
    table, _ = simulate_experiment(n_models=3, model_names=names, P=1, F=4, m=60, rng=3, task="sst2")
    result = analyze(load_experiment("single", build_store(tmp_path, "single", [table])),
                     AnalysisOptions(n_bootstrap=B, seed=SEED, decay_bootstrap=DECAY_B))
    assert len(result["tasks"]["sst2"]["zhong"]["decay"]) == 6
    notes = [line for line in render_summary(result).splitlines() if line.startswith("  note: ")]
    assert sorted(notes) == [f"  note: {n} has a single pretraining seed: its halves split fine-tuning runs, so "
                             "pretraining-seed noise is not represented and the bound is conditional on that "
                             "pretrained model" for n in names]
