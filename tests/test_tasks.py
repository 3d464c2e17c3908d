import numpy as np
import pytest

from seedlab.errors import SeedlabError
from seedlab.data.tasks import TASKS, hash_split_is_eval, load_task

LOCAL_TASKS = [name for name, spec in TASKS.items() if spec.local_dir]


def needs_task(*names):
    """The mark of a test that loads these tasks from the data dir."""
    return pytest.mark.needs_data(*(TASKS[n].local_dir for n in names))


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_task(n)) for n in LOCAL_TASKS])
def test_every_local_task_loads_with_the_common_schema(name):
    spec = TASKS[name]
    train, evaluation = load_task(name, max_train=300, max_eval=200)
    for split in (train, evaluation):
        assert split.column_names == ["instance_id", "text_a", "text_b", "label"]
        ids = list(split["instance_id"])
        assert len(set(ids)) == len(ids)
        assert all(isinstance(t, str) and t for t in split["text_a"])
        labels = np.asarray(list(split["label"]))
        if spec.is_regression:
            assert labels.dtype.kind == "f" and labels.min() >= 0 and labels.max() <= 5
        else:
            assert set(np.unique(labels)) <= set(range(spec.num_labels))
            assert len(np.unique(labels)) >= 2  # a mapping bug would collapse classes
    assert not set(train["instance_id"]) & set(evaluation["instance_id"])


@needs_task("rte")
def test_instance_ids_are_stable_across_loads():
    a = load_task("rte", max_eval=50)[1]
    b = load_task("rte", max_eval=50)[1]
    assert list(a["instance_id"]) == list(b["instance_id"])
    assert list(a["text_a"]) == list(b["text_a"])


@pytest.mark.parametrize("name,rows", [pytest.param(n, rows, marks=needs_task(n))
                                       for n, rows in [("qnli", 5463), ("mnli", 9815), ("boolq", 3270)]])
def test_single_split_tasks_are_hash_split_without_leakage(name, rows):
    train, evaluation = load_task(name)
    assert len(train) + len(evaluation) == rows
    assert not set(train["instance_id"]) & set(evaluation["instance_id"])
    assert all(hash_split_is_eval(i) for i in evaluation["instance_id"])
    assert not any(hash_split_is_eval(i) for i in train["instance_id"])
    assert 0.15 < len(evaluation) / rows < 0.25


@needs_task("rte", "sst2")
def test_known_label_mappings_match_the_glue_conventions():
    _, rte = load_task("rte", max_eval=None)
    first = rte[0]  # GLUE RTE dev row 0 is not_entailment ("Christopher Reeve had an accident.")
    assert first["text_b"] == "Christopher Reeve had an accident." and first["label"] == 1
    _, sst = load_task("sst2")
    assert len(sst) == 872 and sum(sst["label"]) == 444  # PROVENANCE: dev 1: 444 / 0: 428


@needs_task("sst2")
def test_subsample_depends_on_data_seed_only():
    a, _ = load_task("sst2", max_train=100, data_seed=0)
    b, _ = load_task("sst2", max_train=100, data_seed=0)
    c, _ = load_task("sst2", max_train=100, data_seed=1)
    assert list(a["instance_id"]) == list(b["instance_id"]) != list(c["instance_id"])


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(SeedlabError, match=r"unknown task 'sst3' \(valid: .*sst2"):
        load_task("sst3")


@needs_task("rte")
def test_holdout_comes_from_train_only_and_is_deterministic():
    from seedlab.data.tasks import holdout_split

    train, evaluation = load_task("rte")
    rest, held = holdout_split(train, 0.2)
    assert len(rest) + len(held) == len(train)
    assert not set(rest["instance_id"]) & set(held["instance_id"])
    assert not set(held["instance_id"]) & set(evaluation["instance_id"])
    assert 0.15 < len(held) / len(train) < 0.25
    assert list(holdout_split(train, 0.2)[1]["instance_id"]) == list(held["instance_id"])
    with pytest.raises(SeedlabError, match="invalid holdout fraction"):
        holdout_split(train, 1.5)
