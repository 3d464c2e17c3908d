from seedlab.seeds import derive_seed, trial_seeds
from seedlab.trial import resolve_cell, run_name, trial_key

CELL = {"task": "sst2", "model": "tiny", "pretrain_seed": 1, "finetune_seed": 2}


def test_derived_seeds_are_deterministic_distinct_and_31_bit():
    seeds = trial_seeds(7)
    assert seeds == trial_seeds(7)
    assert len(set(seeds.values())) == 3
    assert all(0 <= s < 2**31 for s in seeds.values())
    assert trial_seeds(8) != seeds


def test_an_override_moves_only_its_own_stream():
    base = trial_seeds(7)
    overridden = trial_seeds(7, order_seed=123)
    assert overridden["order_seed"] == 123
    assert overridden["init_seed"] == base["init_seed"] and overridden["dropout_seed"] == base["dropout_seed"]
    assert derive_seed(7, "order") == base["order_seed"]


def test_trial_key_is_canonical_and_sensitive():
    explicit = {**CELL, "init_seed": trial_seeds(2)["init_seed"], "hparams": {"learning_rate": 2e-5}}
    assert trial_key(CELL) == trial_key(explicit)  # defaults spelled out: same computation, same key
    assert trial_key(CELL) != trial_key({**CELL, "finetune_seed": 3})
    assert trial_key(CELL) != trial_key({**CELL, "hparams": {"learning_rate": 1e-4}})
    assert trial_key(CELL) != trial_key({**CELL, "data": {"max_train": 10}})
    assert resolve_cell(CELL)["hparams"]["batch_size"] == 16
    assert run_name(CELL) == "sst2/tiny/p1/f2"
