import pytest

from seedlab.train.seeds import derive_seed, trial_seeds
from seedlab.run.trial import resolve_cell, run_name, trial_key

CELL = {"task": "sst2", "model": "tiny", "pretrain_seed": 1, "finetune_seed": 2}


def test_derived_seeds_are_deterministic_distinct_and_31_bit():
    seeds = trial_seeds(7, pretrain_seed=0)
    assert seeds == trial_seeds(7, pretrain_seed=0)
    assert len(set(seeds.values())) == 3
    assert all(0 <= s < 2**31 for s in seeds.values())
    assert trial_seeds(8, pretrain_seed=0) != seeds


def test_an_override_moves_only_its_own_stream():
    base = trial_seeds(7, pretrain_seed=0)
    overridden = trial_seeds(7, pretrain_seed=0, order_seed=123)
    assert overridden["order_seed"] == 123
    assert overridden["init_seed"] == base["init_seed"] and overridden["dropout_seed"] == base["dropout_seed"]
    assert derive_seed(7, "order/pretrain-0") == base["order_seed"]


def test_fine_tuning_seeds_are_nested_in_pretraining_seeds():
    # The noise decomposition assumes fine-tuning draws independent across pretraining seeds: f=0 under p=0 and
    # f=0 under p=1 must share no stream (a crossed design biases PretVar low).
    under_p0, under_p1 = trial_seeds(0, pretrain_seed=0), trial_seeds(0, pretrain_seed=1)
    assert all(under_p0[stream] != under_p1[stream] for stream in under_p0)
    # ... while two models at the same (p, f) share every draw, so a comparison of models stays paired
    tiny, mini = resolve_cell({**CELL, "model": "tiny"}), resolve_cell({**CELL, "model": "mini"})
    assert all(tiny[f"{s}_seed"] == mini[f"{s}_seed"] for s in ("init", "order", "dropout"))
    assert trial_key({**CELL, "pretrain_seed": 2}) != trial_key(CELL)


def test_trial_key_is_canonical_and_sensitive():
    explicit = {**CELL, "init_seed": trial_seeds(2, pretrain_seed=1)["init_seed"], "hparams": {"learning_rate": 2e-5}}
    assert trial_key(CELL) == trial_key(explicit)  # defaults spelled out: same computation, same key
    assert trial_key(CELL) != trial_key({**CELL, "finetune_seed": 3})
    assert trial_key(CELL) != trial_key({**CELL, "hparams": {"learning_rate": 1e-4}})
    assert trial_key(CELL) != trial_key({**CELL, "data": {"max_train": 10}})
    assert resolve_cell(CELL)["hparams"]["batch_size"] == 16
    assert run_name(CELL) == "sst2/tiny/p1/f2"



def test_model_hparams_override_the_profile_per_model_and_enter_the_trial_key():
    from seedlab.errors import SeedlabError
    from seedlab.run.sweep import SweepSpec

    base = dict(name="s", tasks=("sst2",), models=("tiny", "mini"), pretrain_seeds=(0,), finetune_seeds=(0,),
                hparams={"learning_rate": 1e-3, "epochs": 2})
    plain = SweepSpec(**base)
    tuned = SweepSpec(**base, model_hparams={"mini": {"learning_rate": 3e-4}})
    tuned.validate()
    assert {c["model"]: c["hparams"]["learning_rate"] for c in tuned.cells()} == {"tiny": 1e-3, "mini": 3e-4}
    assert all(c["hparams"]["epochs"] == 2 for c in tuned.cells())  # the rest of `hparams` is kept
    plain_keys = {c["model"]: trial_key(c) for c in plain.cells()}
    tuned_keys = {c["model"]: trial_key(c) for c in tuned.cells()}
    assert tuned_keys["tiny"] == plain_keys["tiny"] and tuned_keys["mini"] != plain_keys["mini"]
    with pytest.raises(SeedlabError, match="model_hparams names model 'small'"):
        SweepSpec(**base, model_hparams={"small": {"learning_rate": 3e-4}}).validate()
    with pytest.raises(SeedlabError, match=r"unknown hyperparameter\(s\) \['lr'\]"):
        SweepSpec(**base, model_hparams={"mini": {"lr": 3e-4}}).validate()


def test_the_compute_version_enters_the_trial_key(monkeypatch):
    import hashlib
    import json

    from seedlab.store import contract

    resolved = resolve_cell(CELL)
    del resolved["method"]  # "standard" stays out of the key
    canonical = json.dumps({**resolved, "compute_version": 2}, sort_keys=True, separators=(",", ":"))
    # version 2: resolve_model draws the head from init_seed alone, so version-1 runs of a cell are not reused
    assert trial_key(CELL) == hashlib.sha256(canonical.encode()).hexdigest()[:20]
    assert trial_key(CELL) == trial_key(dict(CELL))  # equal cells, equal keys
    keys = {}
    for version in (1, 2, 3):
        monkeypatch.setattr(contract, "COMPUTE_VERSION", version)
        keys[version] = trial_key(CELL)
        assert trial_key({**CELL, "hparams": {}}) == keys[version]  # still canonical at every version
    assert len(set(keys.values())) == 3
    unversioned = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    assert keys[1] == hashlib.sha256(unversioned.encode()).hexdigest()[:20]  # keys logged before versions existed
