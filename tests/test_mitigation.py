"""Du & Nguyen's mitigation methods (seedlab.train.mitigation) on the tiny (2-layer) and mini (4-layer) BERT shapes."""

import copy
import inspect
import math

import numpy as np
import pytest
import torch

from seedlab.errors import SeedlabError
from seedlab.train.finetune import Encoded, Hyperparameters, finetune
from seedlab.train.mitigation import METHODS, MixLinear, is_no_decay, mix_weights, prepare
from seedlab.train.models import resolve_model

# resolve_model builds a size's backbone with the WordPiece tokenizer, trained from the corpus on first use
needs_tokenizer = pytest.mark.needs_data("corpus/wikitext-2")


@pytest.fixture(scope="module")
def tiny_model():
    return resolve_model("tiny", pretrain_seed=0, num_labels=2, init_seed=0).model


@pytest.fixture(scope="module")
def mini_model():
    return resolve_model("mini", pretrain_seed=0, num_labels=2, init_seed=0).model


def pretend_pretrained(model, seed=123):
    """A copy whose every parameter is moved off its init value (biases off 0, LayerNorm off 1), as a real
    pretrained checkpoint's are, so that re-initialising can be told apart from leaving alone."""
    model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def synthetic_data(n=32, seed=0, vocab=8192):
    rng = np.random.default_rng(seed)
    ids = [[2, *rng.integers(5, vocab, size=int(rng.integers(6, 14))).tolist(), 3] for _ in range(n)]
    types, labels = [[0] * len(row) for row in ids], rng.integers(0, 2, size=n)
    if hasattr(Encoded, "from_lists"):  # the padded-array form of Encoded
        return Encoded.from_lists(ids, types, labels)
    return Encoded(ids, types, labels)


# ---------------------------------------------------------------------------------------------------------------
# dispatcher


@needs_tokenizer
def test_methods_and_one_line_error_for_unknown(tiny_model):
    assert METHODS == ("standard", "mixout", "llrd", "reinit", "wd_pre")
    with pytest.raises(SeedlabError, match=r"^unknown mitigation method 'dropconnect' \(valid: standard, mixout, "
                                           r"llrd, reinit, wd_pre\)$"):
        prepare(copy.deepcopy(tiny_model), "dropconnect", 0)
    with pytest.raises(SeedlabError, match=r"unknown option\(s\) \['k'\] for mitigation method 'reinit'"):
        prepare(copy.deepcopy(tiny_model), "reinit", 0, {"k": 3})


@needs_tokenizer
def test_standard_changes_nothing_and_builds_finetunes_groups(tiny_model):
    model = copy.deepcopy(tiny_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare(model, "standard", 0)
    assert prepared.model is model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    hp = Hyperparameters(weight_decay=0.03)
    # the groups seedlab.train.finetune built before mitigation methods, verbatim
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    expected = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = prepared.param_groups(hp)
    assert [set(g) for g in groups] == [set(g) for g in expected]
    for got, want in zip(groups, expected):
        assert got["weight_decay"] == want["weight_decay"]
        assert [id(p) for p in got["params"]] == [id(p) for p in want["params"]]
    prepared.after_step(torch.optim.AdamW(groups, lr=hp.learning_rate))  # a no-op


# ---------------------------------------------------------------------------------------------------------------
# reinit


@needs_tokenizer
def test_reinit_redraws_only_the_top_layers_and_pooler(mini_model):
    pretrained = pretend_pretrained(mini_model)
    model = copy.deepcopy(pretrained)
    prepared = prepare(model, "reinit", init_seed=0, options={"layers": 2})
    assert prepared.options["layers_reinitialised"] == 2
    old = pretrained.state_dict()
    redrawn = ("bert.encoder.layer.2.", "bert.encoder.layer.3.", "bert.pooler.")
    std = model.config.initializer_range
    for name, value in model.state_dict().items():
        if name.startswith(redrawn):
            assert not torch.equal(value, old[name]), name
            if name.endswith("bias"):
                assert torch.count_nonzero(value) == 0, name
            elif "LayerNorm" in name:
                assert torch.equal(value, torch.ones_like(value)), name
            else:
                assert abs(value.std().item() - std) < 0.2 * std, name
        else:
            assert torch.equal(value, old[name]), name  # embeddings, layers 0-1, classifier head


@needs_tokenizer
def test_reinit_default_is_capped_at_the_depth(tiny_model):
    pretrained = pretend_pretrained(tiny_model)
    model = copy.deepcopy(pretrained)
    prepared = prepare(model, "reinit", init_seed=0)  # default 5 layers, the model has 2
    assert prepared.options["layers"] == 5 and prepared.options["layers_reinitialised"] == 2
    old = pretrained.state_dict()
    for name, value in model.state_dict().items():
        if name.startswith(("bert.encoder.", "bert.pooler.")):
            assert not torch.equal(value, old[name]), name
        else:
            assert torch.equal(value, old[name]), name


@needs_tokenizer
def test_reinit_is_deterministic_per_init_seed_and_leaves_the_global_rng_alone(tiny_model):
    torch.manual_seed(99)
    state = torch.get_rng_state()
    a = prepare(copy.deepcopy(tiny_model), "reinit", init_seed=7).model.state_dict()
    b = prepare(copy.deepcopy(tiny_model), "reinit", init_seed=7).model.state_dict()
    c = prepare(copy.deepcopy(tiny_model), "reinit", init_seed=8).model.state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["bert.encoder.layer.1.attention.self.query.weight"],
                           c["bert.encoder.layer.1.attention.self.query.weight"])


# ---------------------------------------------------------------------------------------------------------------
# llrd


@needs_tokenizer
def test_llrd_gives_each_layer_its_learning_rate_through_the_schedule(mini_model):
    from transformers import get_linear_schedule_with_warmup

    model = copy.deepcopy(mini_model)
    hp = Hyperparameters(learning_rate=1e-3, weight_decay=0.01)
    groups = prepare(model, "llrd", 0).param_groups(hp)
    layers = model.config.num_hidden_layers  # 4

    def expected_lr(name):
        if name.startswith("bert.embeddings."):
            return hp.learning_rate * 0.95 ** (layers + 1)
        if name.startswith("bert.encoder.layer."):
            return hp.learning_rate * 0.95 ** (layers - int(name.split(".")[3]))
        return hp.learning_rate  # classifier head and pooler

    group_of = {id(p): g for g in groups for p in g["params"]}
    named = list(model.named_parameters())
    assert sum(len(g["params"]) for g in groups) == len(named) == len(group_of)  # each parameter exactly once
    for name, p in named:
        g = group_of[id(p)]
        assert math.isclose(g["lr"], expected_lr(name), rel_tol=1e-12), name
        assert g["weight_decay"] == (0.0 if is_no_decay(name) else hp.weight_decay), name
    assert math.isclose(group_of[id(model.bert.encoder.layer[3].output.dense.weight)]["lr"], 0.95e-3)

    planned = [g["lr"] for g in groups]
    optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate)  # it keeps (and the schedule updates) these dicts
    scheduler = get_linear_schedule_with_warmup(optimizer, 2, 10)
    assert [g["initial_lr"] for g in optimizer.param_groups] == planned
    for _ in range(5):
        optimizer.step()  # no gradients: parameters stay, the schedule advances
        scheduler.step()
        factor = optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["initial_lr"]
        assert 0 < factor <= 1
        for g in optimizer.param_groups:  # every level scaled by the same schedule factor
            assert math.isclose(g["lr"], g["initial_lr"] * factor, rel_tol=1e-9)
        top, embeddings = group_of[id(model.classifier.weight)], group_of[id(model.bert.embeddings.LayerNorm.weight)]
        assert math.isclose(embeddings["lr"] / top["lr"], 0.95 ** (layers + 1), rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# mixout


@needs_tokenizer
def test_mixout_swaps_linear_layers_keeps_parameters_and_disables_dropout(tiny_model):
    model = copy.deepcopy(tiny_model)
    params_before = [id(p) for p in model.parameters()]
    keys_before = list(model.state_dict())
    prepare(model, "mixout", 0)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, MixLinear) and m.p == 0.1 for m in linears)
    assert isinstance(model.classifier, MixLinear)  # the reference replaces every Linear, head included
    assert [id(p) for p in model.parameters()] == params_before
    assert list(model.state_dict()) == keys_before
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    headless = prepare(copy.deepcopy(tiny_model), "mixout", 0, {"include_head": False}).model
    assert type(headless.classifier) is torch.nn.Linear and isinstance(headless.bert.pooler.dense, MixLinear)


@needs_tokenizer
def test_mixout_is_identity_at_eval_and_at_the_target_in_training(tiny_model):
    data = synthetic_data(8)
    batch = data.batch(list(range(8)))
    reference = copy.deepcopy(tiny_model)
    mixed = prepare(copy.deepcopy(tiny_model), "mixout", 0).model
    with torch.no_grad():
        reference.eval(), mixed.eval()
        assert torch.equal(mixed(**batch).logits, reference(**batch).logits)
        for m in reference.modules():  # the standard model without dropout, in training mode
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        reference.train(), mixed.train()
        torch.manual_seed(0)
        # W == target everywhere: (B*T + (1-B)*T - p*T) / (1-p) == T up to rounding
        torch.testing.assert_close(mixed(**batch).logits, reference(**batch).logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mask", ["unit", "element"])
def test_mixout_weight_expectation_is_w_and_a_fraction_p_is_mixed(mask):
    gen = torch.Generator().manual_seed(0)
    weight, target = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    p, draws = 0.1, 4000
    torch.manual_seed(1)
    samples = torch.stack([mix_weights(weight, target, p, mask) for _ in range(draws)])
    deviation = (samples.mean(0) - weight).abs() / (weight - target).abs()
    assert deviation.max() < 0.04  # the standard error is ~0.005 |W - T|
    # an element is mixed when it differs from W / (1-p) - p T / (1-p), the kept value
    kept = (weight - p * target) / (1 - p)
    mixed = ~torch.isclose(samples, kept.expand_as(samples), rtol=0, atol=1e-5)
    assert abs(mixed.float().mean().item() - p) < 0.01
    if mask == "unit":  # one draw per input column, shared by all output rows
        assert torch.equal(mixed, mixed[:, :1, :].expand_as(mixed))


def test_mixout_gradient_and_determinism_under_the_global_seed():
    torch.manual_seed(0)
    layer = MixLinear(torch.nn.Linear(16, 8), p=0.1, mask="element")
    with torch.no_grad():
        layer.weight.add_(1.0)  # W != target
    x = torch.randn(4, 16)
    outs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        outs.append(layer(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    torch.manual_seed(5)
    keep_probe = mix_weights(torch.ones(8, 16), torch.zeros(8, 16), 0.1, "element") * 0.9  # the mask B itself
    layer.weight.grad = None
    torch.manual_seed(5)
    layer(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, keep_probe * x.sum(0) / 0.9)  # d out / d W = B / (1-p)


# ---------------------------------------------------------------------------------------------------------------
# wd_pre


@needs_tokenizer
def test_wd_pre_pulls_the_backbone_toward_pretrained_and_leaves_the_head(tiny_model):
    model = copy.deepcopy(tiny_model)
    prepared = prepare(model, "wd_pre", 0)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)  # fine-tuning has moved every parameter off theta_0
    moved = {n: p.detach().clone() for n, p in model.named_parameters()}
    hp = Hyperparameters(learning_rate=0.1, weight_decay=0.5)  # strength defaults to weight_decay
    groups = prepared.param_groups(hp)
    assert [g.get("prior_decay") for g in groups] == [0.5, None, None, None]
    assert all(g["weight_decay"] == 0.0 for g in groups[:2])  # no decay toward zero for the backbone
    optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # a zero gradient: Adam's own update is exactly zero
    optimizer.step()
    prepared.after_step(optimizer)
    shrink = 1 - hp.learning_rate * hp.weight_decay  # 0.95
    for name, p in model.named_parameters():
        if name.startswith("bert.") and not is_no_decay(name):
            before = (moved[name] - theta0[name]).norm()
            assert math.isclose((p - theta0[name]).norm().item(), shrink * before.item(), rel_tol=1e-4), name
        elif name.startswith("bert."):
            assert torch.equal(p, moved[name]), name  # biases and LayerNorm: neither pulled nor decayed
        elif is_no_decay(name):
            assert torch.equal(p, moved[name]), name
        else:  # the classifier weight: standard AdamW decay toward zero only
            torch.testing.assert_close(p, moved[name] * shrink)
    head = model.classifier.weight.detach().clone()
    prepared.after_step(optimizer)  # the hook alone never touches the head
    assert torch.equal(model.classifier.weight, head)
    strong = prepare(copy.deepcopy(tiny_model), "wd_pre", 0, {"strength": 0.2}).param_groups(hp)
    assert strong[0]["prior_decay"] == 0.2


# ---------------------------------------------------------------------------------------------------------------
# end to end


def local_finetune(model, train, hp, order_seed, dropout_seed, param_groups, after_step, log_every=1):
    """`seedlab.train.finetune.finetune`'s loop on CPU with the optimizer groups and per-step hook of a method (what
    finetune does once it takes them); used while finetune has no such arguments."""
    from transformers import get_linear_schedule_with_warmup

    model.train()
    optimizer = torch.optim.AdamW(param_groups, lr=hp.learning_rate)
    total_steps = max(1, int(round(math.ceil(len(train.labels) / hp.batch_size) * hp.epochs)))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * total_steps), total_steps)
    order = torch.Generator().manual_seed(order_seed)
    torch.manual_seed(dropout_seed)
    curve, running, step = [], [], 0
    while step < total_steps:
        permutation = torch.randperm(len(train.labels), generator=order).tolist()
        for first in range(0, len(permutation), hp.batch_size):
            index = permutation[first : first + hp.batch_size]
            logits = model(**train.batch(index)).logits.float()
            loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(train.labels[index]).long())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip)
            optimizer.step()
            after_step(optimizer)
            scheduler.step()
            step += 1
            running.append(loss.detach())
            if step % log_every == 0 or step == total_steps:
                curve.append((step, float(torch.stack(running).mean())))
                running = []
            if step >= total_steps:
                break
    return curve


def finetune_with(prepared, train, hp, order_seed=1, dropout_seed=2):
    """Through seedlab.train.finetune when it takes param_groups/after_step, else through the mirror above."""
    accepted = inspect.signature(finetune).parameters
    groups = prepared.param_groups(hp)
    if "param_groups" in accepted and "after_step" in accepted:
        return finetune(prepared.model, train, hp, order_seed, dropout_seed, "cpu", log_every=1,
                        param_groups=groups, after_step=prepared.after_step).loss_curve
    return local_finetune(prepared.model, train, hp, order_seed, dropout_seed, groups, prepared.after_step)


HP = Hyperparameters(learning_rate=1e-3, batch_size=8, epochs=1.0, max_seq_length=32)


@needs_tokenizer
def test_standard_through_the_hook_path_reproduces_finetune_exactly(tiny_model):
    train = synthetic_data(16)
    baseline = finetune(copy.deepcopy(tiny_model), train, HP, 1, 2, "cpu", log_every=1).loss_curve
    assert finetune_with(prepare(copy.deepcopy(tiny_model), "standard", 0), train, HP) == baseline


@needs_tokenizer
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_with_finite_loss(tiny_model, method):
    train = synthetic_data(16)
    model = copy.deepcopy(tiny_model)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare(model, method, init_seed=0)
    curve = finetune_with(prepared, train, HP)
    assert len(curve) == 2 and all(math.isfinite(loss) for _, loss in curve)
    assert any(not torch.equal(v, start[k]) for k, v in model.state_dict().items())  # it did train
    if method in ("mixout", "reinit"):  # the methods that draw random numbers: still deterministic on CPU
        again = finetune_with(prepare(copy.deepcopy(tiny_model), method, init_seed=0), train, HP)
        assert again == curve
