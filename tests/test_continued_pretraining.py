"""Seed families of a published checkpoint: "minilm+mlm" continues its masked-LM pretraining per pretraining seed."""

import pytest
import torch

from seedlab.train.models import resolve_model
from seedlab.train.pretrain import PretrainConfig, pretrain
from seedlab.train.pretrain.checkpoint import save_checkpoint

pytestmark = pytest.mark.needs_data  # WikiText-2 from ../shared/data


def family(seed: int, steps: int = 2):
    config = PretrainConfig(size="minilm+mlm", pretrain_seed=seed, max_steps=steps, batch_size=4, max_seq_length=32,
                            learning_rate=1e-4, max_train_lines=300, eval_blocks=8, log_every=1)
    return pretrain(config, device="cpu")


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("families")
    return {seed: (result, save_checkpoint(result, root / f"seed{seed}")) for seed in (1, 2)
            for result in [family(seed)]}


def test_a_family_starts_from_the_published_backbone_and_learns(families):
    published = resolve_model("minilm", 0, 2, init_seed=0).model.bert.state_dict()
    result, _ = families[1]
    assert result.after["mlm_loss"] < result.before["mlm_loss"]  # the new MLM head and the backbone learned
    continued = result.model.bert.state_dict()
    assert torch.equal(continued["pooler.dense.weight"], published["pooler.dense.weight"])  # MLM never trains it
    assert not torch.equal(continued["encoder.layer.0.attention.self.query.weight"],
                           published["encoder.layer.0.attention.self.query.weight"])


def test_pretraining_seeds_give_different_families_and_one_seed_the_same(families):
    (one, _), (two, _) = families[1], families[2]
    weight = "encoder.layer.5.output.dense.weight"
    assert not torch.equal(one.model.bert.state_dict()[weight], two.model.bert.state_dict()[weight])
    again = family(1)
    assert torch.equal(again.model.bert.state_dict()[weight], one.model.bert.state_dict()[weight])


def test_a_family_checkpoint_fine_tunes_as_its_model(families):
    _, checkpoint = families[2]
    resolved = resolve_model("minilm+mlm", 2, 2, init_seed=5, checkpoint=checkpoint)
    assert resolved.init_source == f"checkpoint:{checkpoint}"
    saved = families[2][0].model.bert.state_dict()
    loaded = resolved.model.bert.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)  # the whole backbone, pooler included
    head = resolve_model("minilm", 0, 2, init_seed=5).model.classifier.weight
    assert torch.equal(resolved.model.classifier.weight, head)  # the head depends on init_seed alone


def test_a_family_without_its_checkpoint_is_refused():
    from seedlab.errors import SeedlabError

    with pytest.raises(SeedlabError, match="needs its pretraining stage"):
        resolve_model("minilm+mlm", 1, 2, init_seed=0)
