"""seedlab.stats.metrics against scikit-learn / scipy on random inputs."""

import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from seedlab.stats import metrics

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_scalar_metrics_match_sklearn_scipy(seed):
    rng = np.random.default_rng(seed)
    m = 200
    y2 = rng.integers(0, 2, m)
    p2 = np.where(rng.random(m) < 0.7, y2, 1 - y2)
    y3 = rng.integers(0, 3, m)
    p3 = np.where(rng.random(m) < 0.6, y3, rng.integers(0, 3, m))
    assert metrics.accuracy(y3, p3) == pytest.approx(sk.accuracy_score(y3, p3), abs=1e-15)
    assert metrics.f1(y2, p2) == pytest.approx(sk.f1_score(y2, p2), abs=1e-12)
    assert metrics.mcc(y2, p2) == pytest.approx(sk.matthews_corrcoef(y2, p2), abs=1e-12)
    assert metrics.mcc(y3, p3) == pytest.approx(sk.matthews_corrcoef(y3, p3), abs=1e-12)
    assert metrics.f1_macro(y3, p3) == pytest.approx(sk.f1_score(y3, p3, average="macro"), abs=1e-12)
    p3_missing = np.where(p3 == 2, 0, p3)  # a class never predicted still counts (it is in the labels)
    assert metrics.f1_macro(y3, p3_missing) == pytest.approx(sk.f1_score(y3, p3_missing, average="macro"), abs=1e-12)
    yr = rng.normal(size=m)
    pr = yr + rng.normal(size=m)
    pr[:20] = np.round(pr[:20])  # some ties for spearman
    yr[20:40] = np.round(yr[20:40])
    assert metrics.pearson(yr, pr) == pytest.approx(pearsonr(yr, pr)[0], abs=1e-12)
    assert metrics.spearman(yr, pr) == pytest.approx(spearmanr(yr, pr)[0], abs=1e-12)


def test_degenerate_cases_follow_sklearn():
    y = np.array([0, 0, 0, 0])
    p = np.array([0, 0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert metrics.f1(y, p) == sk.f1_score(y, p, zero_division=0) == 0.0
        assert metrics.mcc(y, p) == sk.matthews_corrcoef(y, p) == 0.0
    assert np.isnan(metrics.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(metrics.spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))


@pytest.mark.parametrize("name", metrics.ALL_METRIC_NAMES)
def test_batched_equals_scalar_along_last_axis(name):
    rng = np.random.default_rng(7)
    m = 50
    if name in ("pearson", "spearman"):
        labels = rng.normal(size=m)
        preds = labels[None, None, :] + rng.normal(size=(3, 4, m))
    elif name == "f1":
        labels = rng.integers(0, 2, m)
        preds = rng.integers(0, 2, (3, 4, m))
    else:
        labels = rng.integers(0, 3, m)
        preds = rng.integers(0, 3, (3, 4, m))
    out = metrics.batched(name)(labels, preds)  # labels broadcast against (3, 4, m)
    assert out.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert out[i, j] == pytest.approx(metrics.score(name, labels, preds[i, j]), abs=1e-12)
    # batched labels too
    lab = np.broadcast_to(labels, (3, 4, m))
    assert np.allclose(metrics.batched(name)(lab, preds), out)


def test_registry_and_validation():
    assert set(metrics.METRICS) == set(metrics.ALL_METRIC_NAMES) == {"accuracy", "f1", "f1_macro", "mcc", "pearson", "spearman"}
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.score("auc", [0], [0])
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.batched("bleu")
    with pytest.raises(ValueError, match="differ in length"):
        metrics.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy([], [])
    with pytest.raises(ValueError, match="1-D"):
        metrics.accuracy([[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="binary"):
        metrics.f1([0, 2], [0, 1])


@pytest.mark.parametrize("seed", range(3))
def test_exact_match_is_the_share_of_questions_with_every_option_right(seed):
    rng = np.random.default_rng(seed)
    questions = rng.integers(0, 25, 150).astype(str)  # options of a question need not be adjacent
    labels = rng.integers(0, 2, 150)
    preds = np.where(rng.random(150) < 0.85, labels, 1 - labels)
    by_question: dict = {}
    for q, y, p in zip(questions, labels, preds):
        by_question.setdefault(q, []).append(y == p)
    expected = sum(all(right) for right in by_question.values()) / len(by_question)
    assert metrics.exact_match(labels, preds, questions) == pytest.approx(expected, abs=1e-15)
    assert metrics.score("exact_match", labels, preds, groups=questions) == metrics.exact_match(labels, preds, questions)
    assert metrics.score("f1", labels, preds, groups=questions) == metrics.f1(labels, preds)  # F1a ignores groups
    assert 0 < expected < 1


def test_a_grouped_metric_needs_its_groups():
    with pytest.raises(ValueError, match="exact_match.*groups="):
        metrics.score("exact_match", [0, 1], [0, 1])
    with pytest.raises(ValueError, match="one entry per instance"):
        metrics.exact_match([0, 1], [0, 1], ["q1"])
    assert "exact_match" not in metrics.ALL_METRIC_NAMES  # no batched form: resampling options splits questions
