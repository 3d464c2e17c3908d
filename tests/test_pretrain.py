"""Masked-LM pretraining on real WikiText-2: masking, seeding, learning, checkpoints, the Ray stage and
checkpoint resolution from MLflow. Small enough for CPU (tiny BERT, short blocks, a handful of steps)."""

import hashlib
import io
import json

import numpy as np
import pytest
import torch

from seedlab.store.checkpoints import (checkpoint_dir, checkpoint_record, find_checkpoint, hub_family_name, is_checkpoint,
                                 require_checkpoint)
from seedlab.errors import SeedlabError
from seedlab.train.pretrain import (PretrainConfig, init_mlm_model, load_blocks, mask_tokens, pretrain, pretrain_seeds,
                              save_checkpoint)

pytestmark = pytest.mark.needs_data("corpus/wikitext-2")  # WikiText-2 and the tokenizer trained on it

SMALL = dict(max_seq_length=32, max_train_lines=300, batch_size=16, eval_blocks=32, learning_rate=2e-3,
             warmup_ratio=0.1, log_every=5)


@pytest.fixture(scope="module")
def tokenizer():
    from seedlab.data.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def trained():
    return pretrain(PretrainConfig("tiny", 0, max_steps=30, **SMALL), device="cpu")


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_masking_statistics(tokenizer):
    ids = load_blocks("validation", tokenizer, 64)[:1500]  # ~96k tokens
    inputs, labels = mask_tokens(ids, tokenizer, torch.Generator().manual_seed(0))
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    chosen = labels != -100
    assert special.any() and not (chosen & special).any()  # [CLS], [SEP] (and [UNK]) never masked
    assert torch.equal(labels[chosen], ids[chosen])
    rate = chosen.sum().item() / (~special).sum().item()
    assert abs(rate - 0.15) < 0.005
    n = chosen.sum().item()
    to_mask = (inputs[chosen] == tokenizer.mask_token_id).sum().item() / n
    unchanged = (inputs[chosen] == ids[chosen]).sum().item() / n  # includes random draws of the same token
    assert abs(to_mask - 0.8) < 0.015 and abs(unchanged - 0.1) < 0.015 and abs(1 - to_mask - unchanged - 0.1) < 0.015
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert not torch.isin(inputs[chosen & (inputs != tokenizer.mask_token_id)], torch.tensor(
        [i for i in tokenizer.all_special_ids if i != tokenizer.mask_token_id])).any()  # no random special token
    again, _ = mask_tokens(ids, tokenizer, torch.Generator().manual_seed(0))
    other, _ = mask_tokens(ids, tokenizer, torch.Generator().manual_seed(1))
    assert torch.equal(inputs, again) and not torch.equal(inputs, other)


def test_blocks_are_packed_with_cls_and_sep(tokenizer):
    blocks = load_blocks("train", tokenizer, 32, max_lines=50)
    assert blocks.shape[1] == 32 and len(blocks) > 10
    assert (blocks[:, 0] == tokenizer.cls_token_id).all() and (blocks[:, -1] == tokenizer.sep_token_id).all()
    assert not (blocks == tokenizer.pad_token_id).any()


def test_seed_streams_are_distinct():
    seeds = pretrain_seeds(0)
    assert len(set(seeds.values())) == 4 and seeds != pretrain_seeds(1)


def test_step_zero_backbone_is_the_random_backbone_of_resolve_model(tokenizer):
    from seedlab.train.models import resolve_model

    mlm = init_mlm_model("tiny", 3, tokenizer.vocab_size)
    random_init = resolve_model("tiny", pretrain_seed=3, num_labels=2, init_seed=0).model.bert
    expected = random_init.state_dict()
    assert set(mlm.bert.state_dict()) == set(expected)  # the pooler too
    assert all(torch.equal(v, expected[k]) for k, v in mlm.bert.state_dict().items())
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight


def test_same_seed_is_bitwise_identical_and_seeds_differ():
    config = PretrainConfig("tiny", 0, max_steps=6, **SMALL)
    a = _weights(pretrain(config, device="cpu").model)
    b = _weights(pretrain(config, device="cpu").model)
    c = _weights(pretrain(PretrainConfig("tiny", 1, max_steps=6, **SMALL), device="cpu").model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["bert.embeddings.word_embeddings.weight"], c["bert.embeddings.word_embeddings.weight"])
    assert not torch.equal(a["bert.encoder.layer.0.attention.self.query.weight"],
                           c["bert.encoder.layer.0.attention.self.query.weight"])


def test_loss_decreases_and_held_out_perplexity_improves(trained):
    losses = [loss for _, loss in trained.loss_curve]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 1.0, losses
    assert trained.before["perplexity"] > 0.8 * trained.model.config.vocab_size  # untrained: ~uniform
    assert trained.after["mlm_loss"] < trained.before["mlm_loss"] - 1.0
    assert trained.before["masked_tokens"] == trained.after["masked_tokens"] > 0  # the same fixed masked set
    assert trained.examples_per_second > 0
    names = {k for k, _, _ in trained.metrics()}
    assert {"train_loss", "val_perplexity_before", "val_perplexity_after", "val_mlm_loss_after",
            "examples_per_second", "train_seconds"} <= names


def test_config_key_and_validation():
    assert PretrainConfig("tiny", 0).key() == PretrainConfig("tiny", 0).key()
    assert PretrainConfig("tiny", 0).key() != PretrainConfig("tiny", 1).key()
    assert PretrainConfig("tiny", 0).key() != PretrainConfig("tiny", 0, max_steps=7).key()


def test_the_pretraining_key_carries_its_compute_version(monkeypatch):
    from seedlab.train.pretrain import config

    keys = {}
    for version in (1, 2, 3):
        monkeypatch.setattr(config, "PRETRAIN_COMPUTE_VERSION", version)
        keys[version] = PretrainConfig("tiny", 0).key()
    assert len(set(keys.values())) == 3  # a checkpoint of earlier code is not found for the new code's config
    unversioned = json.dumps(PretrainConfig("tiny", 0).as_params(), sort_keys=True, separators=(",", ":"))
    assert keys[1] == hashlib.sha256(unversioned.encode()).hexdigest()[:20]  # checkpoints made before versions
    for bad in (dict(size="huge"), dict(schedule="step"), dict(max_steps=0), dict(max_seq_length=1024)):
        with pytest.raises(SeedlabError):
            PretrainConfig(**{"size": "tiny", "pretrain_seed": 0, **bad}).validate()


def test_checkpoint_loads_through_find_checkpoint_into_resolve_model(trained, tmp_path, monkeypatch):
    from seedlab.train.models import resolve_model

    monkeypatch.setenv("SEEDLAB_CHECKPOINTS", str(tmp_path / "ckpts"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/absent/mlflow.db")  # no store: local only
    assert find_checkpoint("tiny", 0) is None
    path = save_checkpoint(trained, checkpoint_dir("tiny", 0))
    files = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "seedlab-pretrain.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    assert find_checkpoint("tiny", 0) == path and find_checkpoint("tiny", 1) is None
    assert find_checkpoint("tiny", 0, key=trained.config.key()) == path
    assert find_checkpoint("tiny", 0, key="another-config") is None
    assert checkpoint_record(path)["key"] == trained.config.key()
    resolved = resolve_model("tiny", 0, num_labels=2, init_seed=0, checkpoint=find_checkpoint("tiny", 0))
    assert resolved.init_source.startswith("checkpoint:")
    loaded, expected = resolved.model.bert.state_dict(), trained.model.bert.state_dict()
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[k], expected[k].cpu()) for k in expected)
    # the pooler, untouched by MLM, is the random backbone's pooler of the same seed: deterministic
    random_pooler = resolve_model("tiny", 0, 2, init_seed=5).model.bert.pooler.dense.weight
    assert torch.equal(loaded["pooler.dense.weight"], random_pooler)
    with pytest.raises(SeedlabError, match="seedlab pretrain"):
        require_checkpoint("tiny", 7)


def test_pickled_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(SeedlabError, match="safetensors"):
        is_checkpoint(tmp_path)


def test_hub_family_names():
    assert hub_family_name("multiberts", 7) == "google/multiberts-seed_7"
    assert hub_family_name("tiny", 0) == "google/bert_uncased_L-2_H-128_A-2"
    assert hub_family_name("medium", 0) == "google/bert_uncased_L-8_H-512_A-8"
    assert hub_family_name("base", 0) == "google/bert_uncased_L-12_H-768_A-12"
    for model, seed in (("multiberts", 25), ("tiny", 1), ("gpt2", 0)):
        with pytest.raises(SeedlabError):
            hub_family_name(model, seed)


@pytest.mark.integration
def test_ray_stage_logs_runs_skips_reruns_and_checkpoints_resolve_from_mlflow(tmp_path, monkeypatch):
    import ray
    from mlflow.tracking import MlflowClient

    from seedlab.train.models import resolve_model
    from seedlab.run.pretrain_stage import run_pretrain_stage

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    settings = {"tiny": dict(max_steps=4, max_seq_length=32, max_train_lines=100, batch_size=8, eval_blocks=8,
                             log_every=2)}
    monkeypatch.setenv("SEEDLAB_RAY_STORAGE", str(tmp_path / "ray_results"))  # keep ~/ray_results clean
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        first = run_pretrain_stage(["tiny"], [0, 1], settings, experiment="ptest", tracking_uri=uri, out=io.StringIO())
        again = run_pretrain_stage(["tiny"], [0, 1], settings, experiment="ptest", tracking_uri=uri, out=io.StringIO())
        # Another sweep's stage: the family it shares (tiny/p1, same config) is reused, only tiny/p2 is new.
        other = run_pretrain_stage(["tiny"], [1, 2], settings, experiment="ptest-other", tracking_uri=uri,
                                   out=io.StringIO())
    finally:
        ray.shutdown()
    assert (first.total, first.finished, first.failed, first.skipped) == (2, 2, 0, 0)
    assert (again.finished, again.skipped) == (0, 2) and again.run_ids == first.run_ids
    assert (other.finished, other.skipped) == (1, 1) and other.run_ids[("tiny", 1)] == first.run_ids[("tiny", 1)]
    assert other.run_ids[("tiny", 2)] not in first.run_ids.values()
    client = MlflowClient(uri)
    runs = client.search_runs([first.experiment_id], filter_string="tags.`seedlab.kind` = 'pretrain'")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert run.data.params["size"] == "tiny" and run.data.params["max_steps"] == "4"
        assert {"mask_seed", "order_seed", "head_seed", "dropout_seed", "num_parameters"} <= set(run.data.params)
        m = run.data.metrics
        assert m["val_perplexity_after"] < m["val_perplexity_before"] and m["examples_per_second"] > 0
        assert [h.step for h in client.get_metric_history(run.info.run_id, "train_loss")] == [2, 4]
        files = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
        assert {"checkpoint/config.json", "checkpoint/model.safetensors", "checkpoint/tokenizer.json"} <= files

    # resolution from MLflow into an empty cache, via the environment as a trial would see it
    monkeypatch.setenv("SEEDLAB_CHECKPOINTS", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEEDLAB_PRETRAIN_EXPERIMENT", "ptest")
    path = find_checkpoint("tiny", 1)
    assert path is not None and path.name == first.run_ids[("tiny", 1)] and is_checkpoint(path)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert find_checkpoint("tiny", 1) == path and (path / "model.safetensors").stat().st_mtime_ns == stamp  # once
    assert find_checkpoint("tiny", 2) is None
    assert find_checkpoint("tiny", 0, experiment="no-such-experiment") is None
    monkeypatch.delenv("SEEDLAB_PRETRAIN_EXPERIMENT")  # a config key finds its run in any experiment of the store
    key = PretrainConfig("tiny", 0, **settings["tiny"]).key()
    assert find_checkpoint("tiny", 0, key=key).name == first.run_ids[("tiny", 0)]
    assert find_checkpoint("tiny", 0, key=PretrainConfig("tiny", 0).key()) is None
    resolved = resolve_model("tiny", 1, num_labels=2, init_seed=0, checkpoint=path)
    random_backbone = resolve_model("tiny", 1, num_labels=2, init_seed=0).model.bert.state_dict()
    loaded = resolved.model.bert.state_dict()
    assert torch.equal(loaded["pooler.dense.weight"], random_backbone["pooler.dense.weight"])
    assert not torch.equal(loaded["encoder.layer.0.output.dense.weight"],
                           random_backbone["encoder.layer.0.output.dense.weight"])  # pretrained, not random
