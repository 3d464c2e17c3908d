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


def test_per_model_finetune_seeds_shape_the_grid_and_the_command_line_sets_every_model_s(capsys):
    from seedlab.run.sweep import sweep_main

    grid = spec(finetune_seeds=(0, 1, 2), model_finetune_seeds={"minilm": (0, 1)}).cells()
    runs = sorted((c["model"], c["pretrain_seed"], c["finetune_seed"]) for c in grid)
    assert runs == [("minilm", 0, 0), ("minilm", 0, 1)] + [("minilm+mlm", p, f) for p in (1, 2) for f in (0, 1, 2)]
    profiles = {"p": spec(finetune_seeds=(0, 1, 2), model_finetune_seeds={"minilm": (0, 1)})}
    assert sweep_main(profiles, "t", ["--profile", "p", "--finetune-seeds", "5,6", "--dry-run"]) == 0
    listed = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  sst2/")]
    assert sorted(listed) == sorted(f"sst2/{m}/p{p}/f{f}" for m, p in (("minilm", 0), ("minilm+mlm", 1),
                                                                        ("minilm+mlm", 2)) for f in (5, 6))


@pytest.mark.parametrize("overrides, message", [
    ({"mini": (0,)}, "model_finetune_seeds names model 'mini'"),
    ({"minilm": ()}, "model_finetune_seeds names model 'minilm' with seeds ()"),
    ({"minilm": (0, -1)}, "invalid seed -1"),
])
def test_model_finetune_seeds_are_checked_before_launch(overrides, message):
    with pytest.raises(SeedlabError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        spec(model_finetune_seeds=overrides).validate()
    assert "\n" not in str(err.value)


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
    assert len(demo.cells()) % 2 == 0  # two trials at a time on 2 cores: no last trial runs alone
    assert all(len(demo.finetune_seeds_for(m)) >= 2 for m in demo.models)  # an SD and a consistency per model
    assert any(len(demo.pretrain_seeds_for(m)) >= 2 for m in demo.models)  # a noise decomposition is possible


@pytest.mark.integration
@pytest.mark.needs_data("glue/SST-2", "corpus/wikitext-2")
def test_the_real_checkpoint_and_its_families_fine_tune_through_ray_and_mlflow(tmp_path, monkeypatch):
    """The packaged MiniLM and two continued-pretraining families of it, a few dozen SST-2 examples each,
    through a real Ray runtime and SQLite store, then the loader: the runs, their sources and their
    predictions are what the design says."""
    import io

    import numpy as np
    import ray
    from mlflow.tracking import MlflowClient

    from seedlab.analysis.loader import load_experiment
    from seedlab.run.sweep import run_sweep

    monkeypatch.setenv("SEEDLAB_CACHE", str(tmp_path / "cache"))  # workers read it at ray.init
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    small = spec(hparams={"batch_size": 8, "epochs": 1, "max_seq_length": 32, "learning_rate": 1e-4},
                 data={"max_train": 32, "max_eval": 24},
                 pretrain={"minilm+mlm": {"max_steps": 2, "batch_size": 4, "max_seq_length": 32,
                                          "max_train_lines": 200, "eval_blocks": 4}})
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        result = run_sweep(small, "real-checkpoint", uri, out=io.StringIO())
    finally:
        ray.shutdown()
    assert result.finished == 6 and result.failed == 0

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("real-checkpoint")
    trials = client.search_runs([exp.experiment_id], "tags.`seedlab.kind` = 'trial'")
    by_name = {r.data.tags["mlflow.runName"]: r for r in trials}
    assert sorted(by_name) == ["sst2/minilm+mlm/p1/f0", "sst2/minilm+mlm/p1/f1", "sst2/minilm+mlm/p2/f0",
                               "sst2/minilm+mlm/p2/f1", "sst2/minilm/p0/f0", "sst2/minilm/p0/f1"]
    assert by_name["sst2/minilm/p0/f0"].data.params["init_source"] == "named:minilm"
    family_sources = {by_name[f"sst2/minilm+mlm/p{p}/f0"].data.params["init_source"] for p in (1, 2)}
    assert len(family_sources) == 2 and all(s.startswith("checkpoint:") for s in family_sources)
    families = client.get_experiment_by_name("real-checkpoint-pretrain")  # the sweep's pretraining stage
    pretraining = client.search_runs([families.experiment_id], "tags.`seedlab.kind` = 'pretrain'")
    assert sorted(r.data.params["pretrain_seed"] for r in pretraining) == ["1", "2"]

    loaded = load_experiment("real-checkpoint", uri).tables["sst2"]
    assert loaded.predictions.shape == (6, 24)
    rows = {(m, int(p), int(f)): i for i, (m, p, f) in enumerate(zip(loaded.model, loaded.pretrain_seed,
                                                                     loaded.finetune_seed))}
    probs = loaded.probs
    # two families of one checkpoint are two backbones: the same fine-tuning seed gives other probabilities
    assert not np.allclose(probs[rows["minilm+mlm", 1, 0]], probs[rows["minilm+mlm", 2, 0]])
    assert not np.allclose(probs[rows["minilm", 0, 0]], probs[rows["minilm", 0, 1]])


def test_narrowing_models_on_the_command_line_keeps_the_profile_s_per_model_settings(capsys):
    from seedlab.run.sweep import sweep_main

    profiles = {"p": spec(finetune_seeds=(0, 1, 2), model_finetune_seeds={"minilm": (0, 1)},
                          model_hparams={"minilm": {"learning_rate": 3e-5}})}
    assert sweep_main(profiles, "t", ["--profile", "p", "--models", "minilm+mlm", "--dry-run"]) == 0
    listed = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  sst2/")]
    assert sorted(listed) == [f"sst2/minilm+mlm/p{p}/f{f}" for p in (1, 2) for f in (0, 1, 2)]
    assert sweep_main(profiles, "t", ["--profile", "p", "--models", "minilm", "--dry-run"]) == 0
    listed = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  sst2/")]
    assert listed == ["sst2/minilm/p0/f0", "sst2/minilm/p0/f1"]  # its own seed lists still apply
