"""The simulator produces consistent tables and exact truths."""

import numpy as np
import pytest

from seedlab.stats.simulate import make_truth, population_accuracy, sample_correctness, simulate_experiment


def test_table_is_consistent():
    table, truth = simulate_experiment(n_models=3, model_names=["mini", "base", "large"], P=3, F=2, m=80,
                                       n_classes=4, decaying_fraction=0.1, rng=0)
    assert table.models() == ["base", "large", "mini"] and table.n_runs == 18 and table.n_instances == 80
    assert np.array_equal(table.probs.argmax(axis=-1), table.predictions)
    assert np.allclose(table.probs.sum(axis=-1), 1, atol=1e-6)
    assert table.labels.min() >= 0 and table.labels.max() < 4
    g = table.grid("large")
    assert g.is_complete() and g.shape == (3, 2, 80)
    assert truth.decaying.sum() == 8
    assert truth.model_names == ("mini", "base", "large")
    # planted decaying instances are the ones where larger is truly worse (equal noise per size)
    assert truth.decay_fraction[("mini", "large")] == pytest.approx(0.1)
    assert np.array_equal(truth.acc[2] < truth.acc[0], truth.decaying)
    assert truth.accuracy_difference[("mini", "large")] == pytest.approx(truth.accuracy[2] - truth.accuracy[0])
    # same rng, same table
    again, _ = simulate_experiment(n_models=3, model_names=["mini", "base", "large"], P=3, F=2, m=80,
                                   n_classes=4, decaying_fraction=0.1, rng=0)
    assert np.array_equal(again.predictions, table.predictions)


def test_accuracy_matches_truth_on_average():
    rng = np.random.default_rng(1)
    truth = make_truth(["a"], rng.normal(0, 1, 50), ability=[0.2], pretrain_sd=0.6, finetune_sd=0.4, pretrain_shared=0.5,
                       finetune_shared=0.3)
    C = sample_correctness(truth, P=4, F=3, rng=rng, n_experiments=2000)[:, 0]  # (R, P, F, m)
    acc = C.mean(axis=(0, 1, 2))
    assert np.all(np.abs(acc - truth.acc[0]) < 5 * np.sqrt(0.25 / (2000 * 12)) * 3)  # runs within seeds correlate
    # a seed main effect: the accuracy of whole seeds varies more than with instance-specific effects only
    seed_acc = C.mean(axis=(2, 3))
    assert seed_acc.std() > 0.02


def test_population_accuracy():
    rng = np.random.default_rng(2)
    d = rng.normal(0.3, 1.2, 200_000)
    from scipy.special import ndtr

    got = population_accuracy(0.5, difficulty_mean=0.3, difficulty_sd=1.2, pretrain_sd=0.4, finetune_sd=0.6)
    assert got == pytest.approx(np.mean(ndtr((0.5 - d) / np.sqrt(0.4**2 + 0.6**2))), abs=3e-3)


def test_validation():
    with pytest.raises(ValueError, match="cannot both be 0"):
        make_truth(["a"], [0.0], pretrain_sd=0, finetune_sd=0)
    with pytest.raises(ValueError, match="pretrain_shared"):
        make_truth(["a"], [0.0], pretrain_shared=1.5)
    with pytest.raises(ValueError, match="model_names"):
        simulate_experiment(n_models=2, model_names=["a"])
