"""resolve_model builds one classifier: the backbone from the checkpoint (or the pretraining seed), the head from
init_seed alone, whatever the backbone's source. Real tiny BERTs, real safetensors checkpoints."""

import pytest
import torch
from safetensors.torch import load_file

from seedlab.train.models import resolve_model

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def tokenizer():
    from seedlab.data.tokenizer import load_tokenizer

    return load_tokenizer()


def make_checkpoint(directory, tokenizer, pretrain_seed: int):
    """A seedlab checkpoint (save_checkpoint) whose every backbone weight differs from any random draw of the
    seed, as a pretrained one's do."""
    from seedlab.train.pretrain import PretrainConfig, PretrainResult, init_mlm_model, save_checkpoint

    model = init_mlm_model("tiny", pretrain_seed, tokenizer.vocab_size)
    noise = torch.Generator().manual_seed(1000 + pretrain_seed)
    with torch.no_grad():
        for p in model.bert.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=noise))
    return save_checkpoint(PretrainResult(model, tokenizer, PretrainConfig("tiny", pretrain_seed)), directory)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("checkpoints")
    return {seed: make_checkpoint(root / f"seed_{seed}", tokenizer, seed) for seed in (3, 4)}


def head(resolved):
    return resolved.model.classifier.weight.detach().clone(), resolved.model.classifier.bias.detach().clone()


def test_the_loaded_backbone_is_the_checkpoint_exactly(checkpoints):
    saved = load_file(checkpoints[3] / "model.safetensors")  # read independently of transformers' loading
    expected = {k.removeprefix("bert."): v for k, v in saved.items() if k.startswith("bert.")}
    loaded = resolve_model("tiny", 3, num_labels=2, init_seed=0, checkpoint=checkpoints[3]).model.bert.state_dict()
    assert "pooler.dense.weight" in expected
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_the_head_depends_on_init_seed_only_whatever_the_backbone(checkpoints):
    from_3 = head(resolve_model("tiny", 3, num_labels=2, init_seed=7, checkpoint=checkpoints[3]))
    from_4 = head(resolve_model("tiny", 4, num_labels=2, init_seed=7, checkpoint=checkpoints[4]))
    as_path = head(resolve_model(str(checkpoints[4]), 4, num_labels=2, init_seed=7))  # the hub/local-path load
    random_5 = head(resolve_model("tiny", 5, num_labels=2, init_seed=7))  # a random backbone of another seed
    for other in (from_4, as_path, random_5):
        assert torch.equal(from_3[0], other[0]) and torch.equal(from_3[1], other[1])
    other_seed = head(resolve_model("tiny", 3, num_labels=2, init_seed=8, checkpoint=checkpoints[3]))
    assert not torch.equal(from_3[0], other_seed[0])


def test_the_head_is_bert_init_drawn_right_after_init_seed(checkpoints):
    """BERT's documented head init, derived here without transformers: weight ~ N(0, initializer_range) as the
    first draw after torch.manual_seed(init_seed), bias 0."""
    resolved = resolve_model("tiny", 3, num_labels=3, init_seed=11, checkpoint=checkpoints[3])
    weight, bias = head(resolved)
    torch.manual_seed(11)
    expected = torch.empty(weight.shape).normal_(mean=0.0, std=resolved.model.config.initializer_range)
    assert torch.equal(weight, expected) and torch.equal(bias, torch.zeros(3))
    assert torch.equal(head(resolve_model("tiny", 3, num_labels=3, init_seed=11))[0], expected)  # random backbone too


def test_the_random_backbone_is_bertmodel_drawn_from_the_pretraining_seed(tokenizer):
    from transformers import BertModel

    from seedlab.train.models import bert_config

    torch.manual_seed(3)
    expected = BertModel(bert_config("tiny", tokenizer.vocab_size)).state_dict()
    loaded = resolve_model("tiny", 3, num_labels=2, init_seed=0).model.bert.state_dict()
    assert set(loaded) == set(expected) and all(torch.equal(loaded[k], expected[k]) for k in expected)


@pytest.mark.parametrize("source", ["random", "checkpoint", "path"])
def test_one_model_is_built(source, checkpoints, monkeypatch):
    from transformers.models.bert import modeling_bert

    built = []
    real_init = modeling_bert.BertModel.__init__

    def counting_init(self, *args, **kwargs):
        built.append(type(self).__name__)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(modeling_bert.BertModel, "__init__", counting_init)
    if source == "random":
        resolve_model("tiny", 3, num_labels=2, init_seed=0)
    elif source == "checkpoint":
        resolve_model("tiny", 3, num_labels=2, init_seed=0, checkpoint=checkpoints[3])
    else:
        resolve_model(str(checkpoints[3]), 3, num_labels=2, init_seed=0)
    assert built == ["BertModel"]
