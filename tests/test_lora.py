"""LoRA and decoders on CPU: real peft adapters on a real (tiny, random-weight) Llama-style decoder, real RTE data."""

import functools

import numpy as np
import pytest
import torch

from seedlab.data.tasks import load_task
from seedlab.run.trial import execute_trial, write_adapter
from seedlab.train.finetune import Hyperparameters, TrainingSettings, encode, finetune, predict
from seedlab.train.lora import LoraSettings, apply_lora
from seedlab.train.models import model_inputs, random_decoder_dir, resolve_model

pytestmark = pytest.mark.needs_data

HP = {"learning_rate": 1e-3, "batch_size": 8, "epochs": 1, "max_seq_length": 48}
CELL = {"task": "rte", "model": "tiny-llama", "pretrain_seed": 0, "finetune_seed": 0, "peft": "lora", "hparams": HP,
        "data": {"max_train": 32, "max_eval": 24}}


@pytest.fixture(scope="module")
def first_run():
    return execute_trial(CELL, device="cpu")


@pytest.fixture(scope="module")
def rte():
    return load_task("rte", 32, 24, 0)


def test_same_seeds_give_bitwise_identical_predictions(first_run):
    again = execute_trial(CELL, device="cpu")
    assert np.array_equal(first_run.probs, again.probs) and first_run.loss_curve == again.loss_curve


def test_lora_seed_alone_changes_the_predictions(first_run):
    other = execute_trial({**CELL, "lora_seed": first_run.params["lora_seed"] + 1}, device="cpu")
    assert not np.array_equal(first_run.probs, other.probs)
    assert {k: v for k, v in other.params.items() if k != "lora_seed"} == \
        {k: v for k, v in first_run.params.items() if k != "lora_seed"}  # the other seeds did not move


def test_lora_seed_draws_the_adapter_and_init_seed_the_head():
    def adapted(init_seed, lora_seed):
        resolved = resolve_model("tiny-llama", 0, 2, init_seed=init_seed)
        return dict(apply_lora(resolved.model, LoraSettings(), lora_seed, resolved.new_modules).named_parameters())

    base, other_lora, other_init = adapted(0, 0), adapted(0, 1), adapted(1, 0)
    lora_a = [n for n in base if "lora_A" in n]
    head = [n for n in base if "modules_to_save" in n]
    assert lora_a and head
    assert all(torch.equal(base[n], other_init[n]) for n in lora_a)
    assert not any(torch.equal(base[n], other_lora[n]) for n in lora_a)
    assert all(torch.equal(base[n], other_lora[n]) for n in head)
    assert not all(torch.equal(base[n], other_init[n]) for n in head)
    assert all(torch.count_nonzero(p) == 0 for n, p in base.items() if "lora_B" in n)  # starts as the base model


def test_a_lora_trial_changes_only_the_adapter_and_the_head(rte):
    resolved = resolve_model("tiny-llama", 0, 2, init_seed=0)
    model = apply_lora(resolved.model, LoraSettings(), 0, resolved.new_modules)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    train = encode(rte[0], resolved.tokenizer, 48, input_names=model_inputs(resolved.model, resolved.tokenizer))
    finetune(model, train, Hyperparameters(**HP), order_seed=0, dropout_seed=0)
    after = model.state_dict()
    assert set(after) == set(before)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all("lora_" in n or "modules_to_save" in n for n in changed), changed
    assert any("lora_B" in n for n in changed) and any("score.modules_to_save" in n for n in changed)
    published = dict(resolve_model("tiny-llama", 0, 2, init_seed=0).model.state_dict())
    for name, value in after.items():  # the frozen base is still the checkpoint's, weight for weight
        if "base_layer" in name or not ("lora_" in name or "modules_to_save" in name or "original_module" in name):
            key = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(value, published[key]), name


def test_trainable_params_are_peft_s_count_and_the_lora_arithmetic(first_run):
    resolved = resolve_model("tiny-llama", 0, 2, init_seed=0)
    trainable, total = apply_lora(resolved.model, LoraSettings(), 0, resolved.new_modules).get_nb_trainable_parameters()
    assert first_run.params["trainable_params"] == trainable
    config = resolved.model.config
    head_dim = config.hidden_size // config.num_attention_heads
    r, d = 8, config.hidden_size
    per_layer = r * (d + d) + r * (d + config.num_key_value_heads * head_dim)  # q_proj and v_proj: A (r x in), B
    assert trainable == config.num_hidden_layers * per_layer + d * 2  # + the score head (no bias), trained in full
    assert first_run.params["total_params"] >= total  # peft counts the head's frozen original once, we count all
    assert first_run.params["lora_target_modules"] == "q_proj,v_proj" and first_run.params["peft"] == "lora"


def test_a_decoder_without_a_pad_token_pads_with_its_eos(first_run):
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(random_decoder_dir("tiny-llama")).pad_token is None  # as Llama's
    resolved = resolve_model("tiny-llama", 0, 2, init_seed=0)
    assert resolved.tokenizer.pad_token == resolved.tokenizer.eos_token == "[SEP]"
    assert resolved.model.config.pad_token_id == resolved.tokenizer.eos_token_id
    assert resolved.new_modules == ("score",) and resolved.init_source == "built:tiny-llama"
    assert len(first_run.predictions) == 24


def test_right_and_left_padding_give_the_same_predictions(rte):
    resolved = resolve_model("tiny-llama", 0, 2, init_seed=0)
    inputs = model_inputs(resolved.model, resolved.tokenizer)
    right = encode(rte[1], resolved.tokenizer, 48, input_names=inputs)
    resolved.tokenizer.padding_side = "left"
    left = encode(rte[1], resolved.tokenizer, 48, input_names=inputs)
    rows = [int(np.argmin(right.lengths)), int(np.argmax(right.lengths))]  # a short row beside the longest
    r, l = right.batch(rows), left.batch(rows)
    assert r["input_ids"][0, -1] == right.pad_id and l["input_ids"][0, 0] == left.pad_id and "position_ids" in l
    short = int(right.lengths[rows[0]])
    assert torch.equal(l["input_ids"][0, -short:], r["input_ids"][0, :short])
    p_right, probs_right = predict(resolved.model, right, batch_size=8)
    p_left, probs_left = predict(resolved.model, left, batch_size=8)
    np.testing.assert_allclose(probs_left, probs_right, atol=1e-5)
    assert np.array_equal(p_left, p_right)


def _spy_on_forward(monkeypatch, cls):
    """Record the keyword arguments every forward of `cls` receives (the signature is kept: it is inspected)."""
    seen = []
    original = cls.forward

    @functools.wraps(original)
    def forward(self, *args, **kwargs):
        seen.append(set(kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "forward", forward)
    return seen


def test_a_decoder_is_never_given_token_type_ids(monkeypatch):
    from transformers import LlamaForSequenceClassification

    seen = _spy_on_forward(monkeypatch, LlamaForSequenceClassification)
    execute_trial({**CELL, "data": {"max_train": 16, "max_eval": 8}}, device="cpu")
    assert seen and all("token_type_ids" not in kwargs and "input_ids" in kwargs for kwargs in seen)


def test_an_encoder_that_takes_no_token_type_ids_is_never_given_them(tmp_path, monkeypatch):
    """DistilBERT's forward names no token_type_ids, though seedlab's WordPiece tokenizer makes them. Its **kwargs
    would swallow them silently, so what the forward receives is recorded; BERT, which takes them, still gets them."""
    from transformers import BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

    from seedlab.data.tokenizer import load_tokenizer
    from seedlab.errors import SeedlabError

    tokenizer = load_tokenizer()
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=64, n_layers=1, n_heads=2, hidden_dim=128)
    torch.manual_seed(0)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    assert "token_type_ids" in tokenizer.model_input_names
    seen = _spy_on_forward(monkeypatch, DistilBertForSequenceClassification)
    small = {**CELL, "model": str(tmp_path), "data": {"max_train": 16, "max_eval": 8}}
    outcome = execute_trial({**small, "peft": None}, device="cpu")
    assert outcome.params["peft"] == "none" and len(outcome.predictions) == 8
    with pytest.raises(SeedlabError, match="cannot apply LoRA to DistilBertForSequenceClassification.*target_modules"):
        execute_trial(small, device="cpu")  # peft has no default target modules for this family
    lora = execute_trial({**small, "peft": {"target_modules": ["q_lin", "v_lin"]}}, device="cpu")
    assert lora.params["lora_target_modules"] == "q_lin,v_lin"
    assert seen and all("token_type_ids" not in kwargs and "input_ids" in kwargs for kwargs in seen)
    bert_seen = _spy_on_forward(monkeypatch, BertForSequenceClassification)
    execute_trial({**small, "model": "tiny", "peft": None}, device="cpu")
    assert bert_seen and all("token_type_ids" in kwargs for kwargs in bert_seen)


def test_full_fine_tuning_of_a_decoder_stays_available(first_run):
    full = execute_trial({**CELL, "peft": None, "data": {"max_train": 16, "max_eval": 8}}, device="cpu")
    assert full.params["peft"] == "none" and full.params["trainable_params"] == full.params["total_params"]
    assert not any(k.startswith("lora_") for k in full.params)
    assert full.params["trainable_params"] < first_run.params["total_params"]  # LoRA adds the adapter and a head copy


def test_gradient_accumulation_and_checkpointing_keep_the_effective_batch(rte):
    """A decoder without dropout (Llama has none), fully fine-tuned: micro-batches that add up to the batch, and
    recomputed activations, train the same model up to float rounding."""
    def train(settings):
        resolved = resolve_model("tiny-llama", 0, 2, init_seed=0)
        inputs = model_inputs(resolved.model, resolved.tokenizer)
        train_set = encode(rte[0], resolved.tokenizer, 48, input_names=inputs)
        result = finetune(resolved.model, train_set, Hyperparameters(**HP), order_seed=0, dropout_seed=0,
                          settings=settings)
        return result, predict(resolved.model, encode(rte[1], resolved.tokenizer, 48, input_names=inputs))[1]

    plain, probs = train(TrainingSettings())
    for settings in (TrainingSettings(grad_accumulation=3), TrainingSettings(gradient_checkpointing=True)):
        other, other_probs = train(settings)
        assert other.steps == plain.steps  # the optimizer steps per epoch follow batch_size, the effective batch
        np.testing.assert_allclose(other_probs, probs, atol=1e-5)
        np.testing.assert_allclose([v for _, v in other.loss_curve], [v for _, v in plain.loss_curve], rtol=1e-5)


def test_bf16_weights_are_a_gpu_setting(first_run):
    assert TrainingSettings(torch_dtype="bfloat16").weights_dtype("cpu") == "float32"
    assert TrainingSettings(torch_dtype="bfloat16").weights_dtype("cuda:0") == "bfloat16"
    assert first_run.params["torch_dtype"] == "float32" and "peak_gpu_memory_mib" not in first_run.metrics
    assert first_run.params["grad_accumulation"] == 1 and first_run.params["gradient_checkpointing"] is False


def test_the_adapter_is_logged_as_safetensors_only_when_asked(first_run, tmp_path):
    from safetensors.torch import load_file

    assert write_adapter(first_run, tmp_path / "none") is None
    asked = execute_trial({**CELL, "log_adapter": True, "data": {"max_train": 16, "max_eval": 8}}, device="cpu")
    folder = write_adapter(asked, tmp_path)
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json")) == \
        ["adapter_config.json", "adapter_model.safetensors"]
    weights = load_file(folder / "adapter_model.safetensors")
    assert any("lora_A" in k for k in weights) and any("score" in k for k in weights)
    assert sum(v.numel() for v in weights.values()) == asked.params["trainable_params"]
