"""benchmarks/bench_lora_gpu.py, the device script of issue 13, checked on CPU with its tiny shapes: it runs seedlab's
LoRA and full fine-tuning paths, one trial and two sharing the device, and writes what it measured."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_lora_gpu  # noqa: E402


def test_the_device_script_runs_on_cpu_with_tiny_shapes(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_lora_gpu.main(["--tiny", "--concurrency", "1,2", "--examples", "16", "--length", "16",
                                "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["tiny"] and result["device"] == "cpu" and set(result["models"]) == set(bench_lora_gpu.SHAPES)
    for name, model in result["models"].items():
        rows = model["concurrency"]
        assert [r["k"] for r in rows] == [1, 2] and all(r["total_examples_per_s"] > 0 for r in rows)
        assert all(r["per_trial_peak_mem_gib"] is None for r in rows)  # no GPU memory on CPU
        assert model["suggested_gpu_fraction"] in (1.0, 0.5)
    tiny = bench_lora_gpu.TINY["llama-3.2-3b"]
    d, r = tiny["hidden_size"], bench_lora_gpu.PEFT["llama-3.2-3b"]["r"]
    kv = tiny["num_key_value_heads"] * d // tiny["num_attention_heads"]
    lora = tiny["num_hidden_layers"] * (r * (d + d) + r * (d + kv))  # q_proj and v_proj: A (r x in) and B (out x r)
    assert result["models"]["llama-3.2-3b"]["concurrency"][0]["trainable_params"] == lora + d * 2  # + the score head
    full = result["models"]["roberta-large"]["concurrency"][0]
    assert full["trainable_params"] == full["total_params"]
