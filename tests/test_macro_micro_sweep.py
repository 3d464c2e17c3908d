"""The macro/micro sweep file: its profiles' grids, and the CPU profile end to end (Ray Tune trials, a real MLflow
store, `seedlab analyze`), a LoRA decoder beside a fully fine-tuned encoder on one path."""

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from seedlab.errors import SeedlabError
from seedlab.run.sweep import SweepSpec
from seedlab.run.trial import resolve_cell, trial_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
import macro_micro  # noqa: E402


def test_the_paper_profile_is_the_paper_s_design():
    paper = macro_micro.PROFILES["paper"]
    paper.validate()
    cells = paper.cells()
    assert len(cells) == len(paper.tasks) * 2 * 10 and {"multirc", "wic", "wsc", "rte_sg"} <= set(paper.tasks)
    llama = [c for c in cells if c["model"] == macro_micro.LLAMA]
    roberta = [c for c in cells if c["model"] == macro_micro.ROBERTA]
    assert all(resolve_cell(c)["peft"]["r"] == 16 for c in llama)
    assert all(resolve_cell(c)["training"]["torch_dtype"] == "bfloat16" for c in llama)
    assert all("peft" not in resolve_cell(c) and "training" not in resolve_cell(c) for c in roberta)  # full FT
    assert len({resolve_cell(c)["lora_seed"] for c in llama if c["task"] == "sst2"}) == 10
    assert set(paper.gpu_fraction) == {macro_micro.LLAMA, macro_micro.ROBERTA}


def test_the_cpu_profile_runs_lora_on_both_models():
    cpu = macro_micro.PROFILES["cpu"]
    cpu.validate()
    assert {c["model"] for c in cpu.cells()} == {"minilm", "tiny-llama"}
    assert all(resolve_cell(c)["peft"]["method"] == "lora" for c in cpu.cells())


def test_model_peft_and_training_must_name_a_model_of_the_sweep_and_be_valid():
    base = SweepSpec(name="t", tasks=("rte",), models=("tiny", "tiny-llama"), pretrain_seeds=(0,), finetune_seeds=(0,))
    with pytest.raises(SeedlabError, match="model_peft names model 'mini'"):
        replace(base, model_peft={"mini": "lora"}).validate()
    with pytest.raises(SeedlabError, match="model_training names model 'mini'"):
        replace(base, model_training={"mini": {}}).validate()
    with pytest.raises(SeedlabError, match=r"invalid LoRA r"):
        replace(base, model_peft={"tiny": {"r": -1}}).validate()
    with pytest.raises(SeedlabError, match="one published checkpoint"):
        replace(base, pretrain_seeds=(0, 1)).validate()  # tiny-llama is one checkpoint too
    from seedlab.run.tuning import TuningSpec

    with pytest.raises(SeedlabError, match="tuning stage cannot be combined with model_peft"):
        replace(base, model_peft={"tiny-llama": "lora"}, tuning=TuningSpec(search_space={"learning_rate": 1e-3})).validate()
    plain = {c["model"]: trial_key(c) for c in base.cells()}
    lora = {c["model"]: trial_key(c) for c in replace(base, model_peft={"tiny-llama": "lora"}).cells()}
    assert lora["tiny"] == plain["tiny"] and lora["tiny-llama"] != plain["tiny-llama"]


@pytest.mark.integration
@pytest.mark.needs_data
def test_the_cpu_profile_runs_end_to_end_beside_a_fully_fine_tuned_encoder(tmp_path):
    """The CPU profile cut to a few dozen examples (its learning is measured in benchmarks/RESULTS.md, not here):
    LoRA on MiniLM and on the tiny decoder, beside the tiny BERT fine-tuned in full, two seeds each, in one sweep
    through Ray and a real MLflow store, then `seedlab analyze` and its pairwise consistency readings."""
    import ray

    from seedlab.run.sweep import run_sweep
    from seedlab.store.contract import KIND_TRIAL, client, find_experiment, find_runs

    cpu = macro_micro.PROFILES["cpu"]
    spec = replace(cpu, name="mm", models=("minilm", "tiny-llama", "tiny"), finetune_seeds=(0, 1), log_adapter=True,
                   data={"max_train": 32, "max_eval": 24}, hparams={**cpu.hparams, "epochs": 1})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        result = run_sweep(spec, experiment="mm", tracking_uri=uri, out=io.StringIO())  # Tune pickles `out`
    finally:
        ray.shutdown()
    assert result.finished == 6 and result.failed == 0
    store = client(uri)
    runs = find_runs(store, [find_experiment(store, "mm").experiment_id], KIND_TRIAL)
    by_model = {}
    for run in runs:
        by_model.setdefault(run.data.params["model"], []).append(run)
    assert {m: len(r) for m, r in by_model.items()} == {"minilm": 2, "tiny-llama": 2, "tiny": 2}
    for run in by_model["minilm"] + by_model["tiny-llama"]:
        p = run.data.params
        assert p["peft"] == "lora" and int(p["trainable_params"]) < int(p["total_params"]) and p["lora_seed"]
        assert {a.path for a in store.list_artifacts(run.info.run_id, "adapter")} >= {
            "adapter/adapter_model.safetensors", "adapter/adapter_config.json"}
    for run in by_model["tiny"]:
        p = run.data.params
        assert p["peft"] == "none" and p["trainable_params"] == p["total_params"] and "lora_r" not in p
        assert not store.list_artifacts(run.info.run_id, "adapter")
    out = tmp_path / "analysis.json"
    proc = subprocess.run([sys.executable, "-m", "seedlab.cli", "analyze", "--experiment", "mm", "--tracking-uri", uri,
                           "--json", str(out), "--no-log"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    models = json.loads(out.read_text())["tasks"]["sst2"]["models"]
    assert set(models) == {"minilm", "tiny-llama", "tiny"} and all(m["n_runs"] == 2 for m in models.values())
    for m in models.values():  # two runs: one pair, whose consistency is the pairwise agreement
        pairs = m["pairwise_consistency"]
        assert pairs["n_pairs"] == 1 and pairs["consistency"]["mean"] == pytest.approx(m["agreement_pairwise"])
        assert pairs["correct_consistency"]["mean"] <= pairs["consistency"]["mean"]
    assert "correct consistency" in proc.stdout
    assert "Consistency between pairs of runs" in (tmp_path / "seedlab-report-mm.html").read_text(encoding="utf-8")
