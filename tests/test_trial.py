"""Real transformers models on real data, small enough for CPU tests."""

import numpy as np
import pytest
import torch

from seedlab.train.models import resolve_model, validate_model
from seedlab.errors import SeedlabError
from seedlab.run.trial import execute_trial

CELL = {"task": "rte", "model": "tiny", "pretrain_seed": 0, "finetune_seed": 0,
        "hparams": {"learning_rate": 1e-3, "batch_size": 16, "epochs": 1, "max_seq_length": 48},
        "data": {"max_train": 96, "max_eval": 40}}
needs_tokenizer = pytest.mark.needs_data("corpus/wikitext-2")  # a size's backbone uses the corpus-trained tokenizer
needs_cell_data = pytest.mark.needs_data("glue/RTE", "corpus/wikitext-2")  # CELL's task and tokenizer


@pytest.fixture(scope="module")
def first_run():
    return execute_trial(CELL, device="cpu")


@needs_cell_data
def test_same_config_gives_bitwise_identical_predictions(first_run):
    again = execute_trial(CELL, device="cpu")
    assert np.array_equal(first_run.probs, again.probs)  # bitwise, not approximately
    assert np.array_equal(first_run.predictions, again.predictions)
    assert first_run.loss_curve == again.loss_curve


@needs_cell_data
def test_each_seed_stream_changes_the_result(first_run):
    for override in ({"init_seed": 1}, {"order_seed": 1}, {"dropout_seed": 1}, {"pretrain_seed": 1}):
        other = execute_trial({**CELL, **override}, device="cpu")
        assert not np.array_equal(first_run.probs, other.probs), override


@needs_cell_data
def test_outcome_records_seeds_params_and_metrics(first_run):
    p = first_run.params
    assert {"init_seed", "order_seed", "dropout_seed", "learning_rate", "batch_size", "max_seq_length"} <= set(p)
    assert p["num_train"] == 96 and p["num_eval"] == 40 and p["init_source"] == "random"
    assert set(first_run.metrics) == {"eval_accuracy"}
    acc = np.mean(first_run.predictions == first_run.labels)
    assert first_run.metrics["eval_accuracy"] == pytest.approx(acc)
    np.testing.assert_allclose(first_run.probs.sum(axis=1), 1.0, atol=1e-5)


@needs_tokenizer
def test_init_seed_sets_only_the_head():
    a = resolve_model("tiny", pretrain_seed=3, num_labels=2, init_seed=0).model
    b = resolve_model("tiny", pretrain_seed=3, num_labels=2, init_seed=1).model
    c = resolve_model("tiny", pretrain_seed=4, num_labels=2, init_seed=0).model
    assert all(torch.equal(x, y) for x, y in zip(a.bert.state_dict().values(), b.bert.state_dict().values()))
    assert not torch.equal(a.classifier.weight, b.classifier.weight)
    assert torch.equal(a.classifier.weight, c.classifier.weight)  # the head ignores the pretraining seed
    assert not torch.equal(a.bert.embeddings.word_embeddings.weight, c.bert.embeddings.word_embeddings.weight)


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(SeedlabError, match=r"unknown model 'huge' \(valid: tiny, mini"):
        validate_model("huge")
