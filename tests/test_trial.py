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


def test_predictions_and_representations_come_from_one_forward_pass(first_run):
    """Logging representations must not forward the evaluation set a second time, nor change a prediction."""
    from transformers import BertForSequenceClassification

    eval_forwards = []

    def count(module, args, output):
        if isinstance(module, BertForSequenceClassification) and not module.training:
            eval_forwards.append(len(output.logits))

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        with_states = execute_trial({**CELL, "log_representations": True}, device="cpu")
    finally:
        handle.remove()
    assert eval_forwards == [40]  # the 40 evaluation instances, one batch, forwarded once
    assert np.array_equal(with_states.probs, first_run.probs) and np.array_equal(with_states.predictions,
                                                                                  first_run.predictions)
    assert first_run.representations is None
    assert with_states.representations.shape == (2, 40, 128) and with_states.representations.dtype == np.float16


def test_predict_returns_the_states_of_its_own_forward_pass():
    from seedlab.data.tasks import load_task
    from seedlab.train.finetune import encode, predict

    resolved = resolve_model("tiny", pretrain_seed=0, num_labels=2, init_seed=0)
    model = resolved.model
    data = encode(load_task("rte", 8, 20, 0)[1], resolved.tokenizer, 48)
    calls = []
    handle = model.register_forward_hook(lambda module, args, output: calls.append(len(output.logits)))
    try:
        predictions, probs, states = predict(model, data, batch_size=8, return_states=True)
        assert calls == [8, 8, 4]  # one forward per batch
        plain_predictions, plain_probs = predict(model, data, batch_size=8)
    finally:
        handle.remove()
    assert np.array_equal(predictions, plain_predictions) and np.array_equal(probs, plain_probs)  # bitwise
    with torch.no_grad():  # the reference, batch by batch: every layer's [CLS] state, embedding output excluded
        hidden = [model(**data.batch(list(range(first, min(first + 8, 20)))), output_hidden_states=True).hidden_states
                  for first in range(0, 20, 8)]
    expected = torch.cat([torch.stack([h[:, 0, :] for h in layers[1:]]) for layers in hidden], dim=1)
    assert states.shape == (2, 20, 128)
    assert np.array_equal(states, expected.numpy().astype(np.float16))


def test_adamw_is_fused_where_torch_has_the_kernel_and_makes_the_loop_s_update():
    from seedlab.train.finetune import adamw

    torch.manual_seed(0)
    weights = [torch.randn(7, 5), torch.randn(5)]
    grads = [torch.randn_like(w) for w in weights]
    results = {}
    for name, make in (("fused", lambda ps: adamw([{"params": ps, "weight_decay": 0.01}], lr=1e-2)),
                       ("loop", lambda ps: torch.optim.AdamW([{"params": ps, "weight_decay": 0.01}], lr=1e-2,
                                                             foreach=False))):
        params = [w.clone().requires_grad_() for w in weights]
        optimizer = make(params)
        for _ in range(3):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
        results[name] = (optimizer.defaults.get("fused"), [p.detach() for p in params])
    assert results["fused"][0] is True and not results["loop"][0]
    for a, b in zip(results["fused"][1], results["loop"][1]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, weights[0] if a.shape == weights[0].shape else weights[1])  # it moved
    on_meta = adamw([torch.empty(3, device="meta", requires_grad=True)], lr=1e-3)
    assert not on_meta.defaults.get("fused")  # no fused kernel there: torch's default implementation
