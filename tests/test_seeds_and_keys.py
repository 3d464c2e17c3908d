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
    canonical = json.dumps({**resolved, "compute_version": 3}, sort_keys=True, separators=(",", ":"))
    # version 3: AdamW's fused kernel, so runs of a cell by earlier code (versions 1 and 2) are not reused
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


STANDARD_KEYS = {"task", "model", "method", "pretrain_seed", "finetune_seed", "init_seed", "order_seed", "dropout_seed",
                 "hparams", "data", "pretrained", "log_representations"}


def test_full_fine_tuning_cells_keep_their_resolved_form_and_keys():
    assert set(resolve_cell(CELL)) == STANDARD_KEYS  # no LoRA or training keys with default values
    for same in ({"peft": None}, {"peft": "none"}, {"training": {}}, {"training": {"grad_accumulation": 1}},
                 {"log_adapter": False}):
        assert trial_key({**CELL, **same}) == trial_key(CELL), same


def test_lora_cells_carry_their_settings_and_their_own_seed_stream():
    from seedlab.train.seeds import lora_seed

    lora = resolve_cell({**CELL, "peft": "lora"})
    assert set(lora) == STANDARD_KEYS | {"peft", "lora_seed"}
    assert lora["peft"] == {"method": "lora", "r": 8, "alpha": 16.0, "dropout": 0.1, "target_modules": None}
    assert lora["lora_seed"] == derive_seed(2, "lora/pretrain-1") == lora_seed(2, pretrain_seed=1)
    assert lora["lora_seed"] not in trial_seeds(2, pretrain_seed=1).values()
    # nested like the other streams: f=2 under another pretraining seed draws another adapter
    assert resolve_cell({**CELL, "peft": "lora", "pretrain_seed": 0})["lora_seed"] != lora["lora_seed"]
    assert {k: lora[k] for k in STANDARD_KEYS} == resolve_cell(CELL)  # the other streams do not move
    overridden = resolve_cell({**CELL, "peft": "lora", "lora_seed": 5})
    assert overridden["lora_seed"] == 5 and {k: overridden[k] for k in STANDARD_KEYS} == resolve_cell(CELL)
    assert resolve_cell(lora) == lora  # a resolved cell resolves to itself
    key = trial_key({**CELL, "peft": "lora"})
    assert key == trial_key({**CELL, "peft": {"method": "lora", "r": 8, "alpha": 16}})
    assert len({key, trial_key(CELL), trial_key({**CELL, "peft": {"r": 16}}),
                trial_key({**CELL, "peft": "lora", "lora_seed": 5}),
                trial_key({**CELL, "peft": "lora", "training": {"gradient_checkpointing": True}})}) == 5


@pytest.mark.parametrize("cell,match", [
    ({"lora_seed": 3}, "need a LoRA cell"),
    ({"log_adapter": True}, "need a LoRA cell"),
    ({"peft": "lora", "method": "mixout"}, "cannot be combined with LoRA"),
    ({"peft": {"r": 0}}, r"invalid LoRA r 0 \(valid"),
    ({"peft": {"rank": 8}}, r"unknown LoRA option\(s\) \['rank'\]"),
    ({"peft": "adapters"}, r"invalid peft 'adapters' \(valid: 'none', 'lora'"),
    ({"training": {"dtype": "bf16"}}, r"unknown training setting\(s\) \['dtype'\]"),
    ({"training": {"torch_dtype": "float16"}}, r"invalid torch_dtype 'float16' \(valid: float32, bfloat16\)"),
    ({"training": {"grad_accumulation": 32}}, "grad_accumulation 32 exceeds batch_size 16"),
])
def test_bad_lora_and_training_settings_are_one_line_errors(cell, match):
    from seedlab.errors import SeedlabError

    with pytest.raises(SeedlabError, match=match) as err:
        resolve_cell({**CELL, **cell})
    assert "\n" not in str(err.value)
