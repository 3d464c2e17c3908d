"""Named checkpoints and their continued-pretraining families in a sweep: the grid, the pre-launch checks."""

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from seedlab.errors import SeedlabError
from seedlab.run.sweep import SweepSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
import seed_study  # noqa: E402


def spec(**changes) -> SweepSpec:
    base = SweepSpec(name="t", tasks=("sst2",), models=("minilm", "minilm+mlm"), pretrain_seeds=(1, 2),
                     model_pretrain_seeds={"minilm": (0,)}, finetune_seeds=(0, 1), pretrained=True,
                     pretrain={"minilm+mlm": {"max_steps": 2}})
    return replace(base, **changes)


def test_published_checkpoint_has_one_pretraining_seed_and_families_have_theirs():
    cells = spec().cells()
    assert sorted({(c["model"], c["pretrain_seed"]) for c in cells}) == [("minilm", 0), ("minilm+mlm", 1),
                                                                         ("minilm+mlm", 2)]
    assert len(cells) == 6
    published = [c for c in cells if c["model"] == "minilm"]
    assert all(not c["pretrained"] and "pretrain_key" not in c for c in published)  # its own weights
    families = [c for c in cells if c["model"] == "minilm+mlm"]
    assert len({c["pretrain_key"] for c in families}) == 2  # one pretraining run per family
    assert spec().pretrained_families() == [("minilm+mlm", 1), ("minilm+mlm", 2)]


def test_more_than_one_pretraining_seed_of_a_published_checkpoint_is_refused():
    with pytest.raises(SeedlabError, match="one published checkpoint") as err:
        spec(model_pretrain_seeds={}).validate()
    assert "\n" not in str(err.value) and "minilm+mlm" in str(err.value)


def test_model_pretrain_seeds_must_name_a_model_of_the_sweep():
    with pytest.raises(SeedlabError, match="model_pretrain_seeds names model 'mini'"):
        spec(model_pretrain_seeds={"mini": (0,)}).validate()


def test_a_model_that_cannot_load_is_refused_before_launch(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not read")  # pickled weights only: never loaded
    with pytest.raises(SeedlabError, match="safetensors") as err:
        spec(models=(str(folder),), model_pretrain_seeds={str(folder): (0,)}, pretrain=None).check_models()
    assert "\n" not in str(err.value)


def test_an_unreachable_hub_name_is_refused_before_launch(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and the name is in no local cache
    with pytest.raises(SeedlabError, match="cannot load model 'nobody/no-such-model'.*HF_HUB_OFFLINE"):
        spec(models=("nobody/no-such-model",), model_pretrain_seeds={}, pretrain=None,
             pretrain_seeds=(0,)).check_models()


def test_the_sweep_file_profiles_validate():
    for profile in seed_study.PROFILES.values():
        profile.validate()
    demo = seed_study.PROFILES["demo"]
    assert len(demo.cells()) >= 8  # the demo's bar: at least 8 fine-tuning runs
    assert any(len(demo.pretrain_seeds_for(m)) >= 2 for m in demo.models)  # a noise decomposition is possible
