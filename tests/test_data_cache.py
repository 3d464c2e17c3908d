"""Work done once per node: the cache of derived data (seedlab.data.cache), the task splits and the tokenized
encodings a trial reads from it. Real data, real tokenizer, real processes for the concurrency check."""

import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from seedlab.data import cache
from seedlab.data.cache import cache_key, cached_arrays, entry_dir

pytestmark = pytest.mark.needs_data


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEEDLAB_CACHE", str(tmp_path / "cache"))
    cache.MEMO.clear()
    yield tmp_path / "cache"
    cache.MEMO.clear()


def test_an_entry_is_computed_once_then_read_from_the_process_then_from_disk(private_cache):
    calls = []

    def compute():
        calls.append(1)
        return {"ids": np.array(["a", "bb"]), "x": np.arange(6).reshape(2, 3)}

    first = cached_arrays("t", "k1", compute)
    again = cached_arrays("t", "k1", compute)
    assert again["x"] is first["x"] and len(calls) == 1  # the process's memo
    cache.MEMO.clear()
    from_disk = cached_arrays("t", "k1", compute)
    assert len(calls) == 1 and from_disk["x"] is not first["x"]
    assert np.array_equal(from_disk["x"], first["x"]) and list(from_disk["ids"]) == ["a", "bb"]
    with pytest.raises(ValueError, match="read-only"):
        from_disk["x"][0, 0] = 7  # one trial cannot change what the next one reads


def test_object_arrays_are_refused_and_nothing_is_left_behind(private_cache):
    with pytest.raises(TypeError, match="object array"):
        cached_arrays("t", "k2", lambda: {"bad": np.array([{"a": 1}], dtype=object)})
    assert not entry_dir("t", "k2").exists()
    assert not [p for p in entry_dir("t", "k2").parent.iterdir() if not p.name.endswith(".lock")]


def test_an_unfinished_entry_is_ignored_and_replaced(private_cache):
    half = entry_dir("t", "k3")
    half.mkdir(parents=True)
    np.save(half / "x.npy", np.zeros(3))  # a writer killed before it marked the entry complete
    got = cached_arrays("t", "k3", lambda: {"x": np.ones(3)})
    assert np.array_equal(got["x"], np.ones(3))
    cache.MEMO.clear()
    assert np.array_equal(cached_arrays("t", "k3", lambda: {"x": np.full(3, 2.0)})["x"], np.ones(3))


def test_keys_ignore_dict_order_and_name_every_part():
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    assert cache_key("x", {"a": 1}) != cache_key("x", {"a": 2})


def _compute_slowly(directory: str, log: str) -> None:
    import os

    os.environ["SEEDLAB_CACHE"] = directory
    from seedlab.data.cache import cached_arrays

    def compute():
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return {"x": np.arange(10)}

    cached_arrays("t", "shared", compute)


def test_concurrent_processes_compute_an_entry_once(private_cache, tmp_path):
    log = tmp_path / "computed.txt"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_compute_slowly, args=(str(private_cache), str(log))) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert len(log.read_text().split()) == 1  # the others waited on the lock and read the entry
    assert np.array_equal(np.load(entry_dir("t", "shared") / "x.npy", allow_pickle=False), np.arange(10))


@pytest.mark.parametrize("task", ["rte", "qnli", "stsb"])  # two files; one hash-split file; regression labels
def test_cached_splits_equal_the_source(private_cache, task):
    from seedlab.data.tasks import _load_local, get_task, load_task, task_origin

    spec = get_task(task)
    train, evaluation = _load_local(spec, Path(task_origin(task)["dir"]))  # straight from the files
    for _ in ("computed", "memo"):
        got_train, got_eval = load_task(task)
        for got, expected in ((got_train, train), (got_eval, evaluation)):
            assert got.features == expected.features
            assert got.to_dict() == expected.to_dict()
    cache.MEMO.clear()  # a new process: from disk
    assert load_task(task, max_train=50, data_seed=3)[0].to_dict() == train.select(
        np.sort(np.random.default_rng(3).permutation(len(train))[:50])).to_dict()


def test_the_origin_changes_when_a_source_file_changes(tmp_path, monkeypatch):
    from seedlab.data.paths import local_data_dir
    from seedlab.data.tasks import task_origin

    copy = tmp_path / "data" / "glue" / "RTE"
    copy.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (copy / name).write_bytes((local_data_dir() / "glue" / "RTE" / name).read_bytes())
    monkeypatch.setenv("SEEDLAB_DATA", str(tmp_path / "data"))
    before = task_origin("rte")
    with open(copy / "dev.tsv", "a") as fh:
        fh.write("9999\tA new premise.\tA new hypothesis.\tentailment\n")
    assert task_origin("rte") != before


def test_tokenizer_identity_ignores_the_truncation_a_call_leaves_and_tells_tokenizers_apart():
    from transformers import BertTokenizerFast

    from seedlab.data.tokenizer import load_tokenizer, train_wordpiece
    from seedlab.run.trial import tokenizer_identity

    tok = load_tokenizer()
    fresh = BertTokenizerFast.from_pretrained(tok.name_or_path)
    tok(["a b c d e f"], truncation=True, max_length=3)  # leaves truncation state in the backend
    assert tokenizer_identity(tok) == tokenizer_identity(fresh)
    other = BertTokenizerFast(tokenizer_object=train_wordpiece(vocab_size=500))
    assert tokenizer_identity(other) != tokenizer_identity(fresh)


def test_encoded_splits_from_the_cache_equal_a_fresh_encoding(private_cache):
    from seedlab.data.tasks import holdout_split, load_task
    from seedlab.data.tokenizer import load_tokenizer
    from seedlab.run.trial import encoded_splits
    from seedlab.train.finetune import encode

    tok = load_tokenizer()
    data = {"max_train": 80, "max_eval": 30, "data_seed": 1, "holdout": 0.25}
    train, _ = load_task("mrpc", 80, 30, 1)
    rest, held = holdout_split(train, 0.25)
    expected = encode(rest, tok, 40), encode(held, tok, 40)
    for stage in ("computed", "memo", "disk"):
        if stage == "disk":
            cache.MEMO.clear()
        got = encoded_splits("mrpc", data, tok, 40)
        for mine, theirs in zip((got.train, got.eval), expected):
            for field in ("input_ids", "token_type_ids", "lengths", "labels"):
                assert np.array_equal(getattr(mine, field), getattr(theirs, field)), (stage, field)
                assert getattr(mine, field).dtype == getattr(theirs, field).dtype
            assert mine.pad_id == theirs.pad_id
        assert list(got.eval_ids) == list(held["instance_id"])
    entries = lambda: [p for p in (private_cache / "encodings").iterdir() if (p / "entry.json").exists()]  # noqa: E731
    assert len(entries()) == 1
    encoded_splits("mrpc", data, tok, 41)  # another length: another entry
    encoded_splits("mrpc", {**data, "data_seed": 2}, tok, 40)  # another subsample: another entry
    assert len(entries()) == 3


def test_a_warm_trial_reads_no_raw_data_and_skips_hf_datasets(private_cache, tmp_path):
    """The second fresh process on a node: its trial's data come from the disk cache, without importing HF
    datasets (1-2 s) or reading the task's files."""
    script = tmp_path / "trial.py"
    script.write_text(
        "import json, sys\n"
        "from seedlab.run.trial import execute_trial\n"
        "cell = {'task': 'rte', 'model': 'tiny', 'pretrain_seed': 0, 'finetune_seed': 0,\n"
        "        'hparams': {'learning_rate': 1e-3, 'batch_size': 16, 'epochs': 1, 'max_seq_length': 32},\n"
        "        'data': {'max_train': 32, 'max_eval': 16}}\n"
        "o = execute_trial(cell, device='cpu')\n"
        "print(json.dumps({'datasets': 'datasets' in sys.modules, 'probs': o.probs.tolist()}))\n")
    env = {**__import__("os").environ, "SEEDLAB_CACHE": str(private_cache)}
    runs = [json.loads(subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                                      check=True).stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert runs[0]["datasets"] and not runs[1]["datasets"]
    assert runs[0]["probs"] == runs[1]["probs"]  # and the same predictions, bitwise
