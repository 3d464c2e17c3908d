"""Issue 13's device measurements: a Llama-3.2-3B-shaped decoder with LoRA and RoBERTa-large fully fine-tuned, one
trial per GPU and k trials sharing one GPU (what Ray's fractional GPUs do), through seedlab's own training loop.

    python benchmarks/bench_lora_gpu.py --json lora_gpu.json                  # on a GPU host (H100/H200 class)
    python benchmarks/bench_lora_gpu.py --tiny --concurrency 1,2 --examples 64   # CPU check of the script itself

Models (random weights from the published configs; throughput and memory do not depend on the weights' values):

- ``llama-3.2-3b``: LlamaForSequenceClassification, 28 layers, hidden 3072, 24 heads, 8 key-value heads,
  intermediate 8192, vocabulary 128,256, tied embeddings; LoRA r=16, alpha=32, dropout 0.05 on q_proj/v_proj
  (`seedlab.train.lora.apply_lora`), the score head trained in full, bf16 frozen weights and gradient
  checkpointing (`seedlab.train.finetune.TrainingSettings`), as the `paper` profile of sweeps/macro_micro.py runs it.
- ``roberta-large``: RobertaForSequenceClassification, 24 layers, hidden 1024, 16 heads, intermediate 4096,
  vocabulary 50,265; full fine-tuning, fp32 weights under bf16 autocast.

Batch 16, sequence length 128 (every row full length: the worst case of a batch). Per model: examples/s and the peak
GPU memory (`torch.cuda.max_memory_allocated`, what a trial logs as `peak_gpu_memory_mib`) of one trial, then k = 1, 2,
4, 8 trials in separate processes on the same GPU, started together: their total examples/s and the peak memory of
each. The GPU fraction it suggests is 1/k for the k of the highest total throughput whose trials fit in memory.

``--tiny`` swaps in 2-layer shapes of each family (same code path: LoRA, bf16 settings, checkpointing) so the script
can be checked on CPU; its numbers say nothing about the large models. On CPU there is no peak GPU memory (None).
Needs torch, transformers and peft; no data, no tokenizer, no hub access.
"""

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

BATCH = 16
WORKER_TIMEOUT_S = 1800  # a worker killed outright (host out of memory) never reports: do not wait forever
# the published configs (hf.co/meta-llama/Llama-3.2-3B, hf.co/FacebookAI/roberta-large config.json)
SHAPES = {
    "llama-3.2-3b": {"model_type": "llama", "hidden_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 24,
                     "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256,
                     "tie_word_embeddings": True, "rms_norm_eps": 1e-5, "max_position_embeddings": 131072},
    "roberta-large": {"model_type": "roberta", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                      "intermediate_size": 4096, "vocab_size": 50265, "max_position_embeddings": 514,
                      "type_vocab_size": 1, "pad_token_id": 1},
}
TINY = {
    "llama-3.2-3b": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "intermediate_size": 128, "vocab_size": 1000},
    "roberta-large": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
                      "vocab_size": 1000},
}
# how each model is trained: the paper profile's settings (sweeps/macro_micro.py)
PEFT = {"llama-3.2-3b": {"r": 16, "alpha": 32, "dropout": 0.05}, "roberta-large": None}
TRAINING = {"llama-3.2-3b": {"torch_dtype": "bfloat16", "gradient_checkpointing": True}, "roberta-large": {}}
LEARNING_RATE = {"llama-3.2-3b": 2e-4, "roberta-large": 2e-5}


def build(name: str, tiny: bool, device: str):
    """The classifier `name` with random weights (seed 0), LoRA applied where the profile applies it, on `device`.

    A LoRA model is built in bf16 directly (an fp32 3B model would take 12 GiB per process only to be cast), then its
    trainable parameters (the adapters and the head) are made fp32 as seedlab trains them."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from seedlab.train.lora import LoraSettings, apply_lora

    fields = {**SHAPES[name], **(TINY[name] if tiny else {})}
    config = AutoConfig.for_model(fields.pop("model_type"), num_labels=2, **fields)
    if config.pad_token_id is None:
        config.pad_token_id = 0  # the decoder classifier pools the last token that is not this id
    config.use_cache = False
    lora = LoraSettings.from_cell(PEFT[name])
    dtype = torch.bfloat16 if lora is not None and device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = AutoModelForSequenceClassification.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    if lora is not None:
        head = "score" if config.model_type == "llama" else "classifier"
        model = apply_lora(model, lora, lora_seed=0, head_modules=(head,))
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    return model


def random_split(n: int, length: int, vocab: int, pad_id: int, seed: int):
    """n full-length rows of random token ids (never the pad id), random binary labels."""
    from seedlab.train.finetune import Encoded

    rng = np.random.default_rng(seed)
    ids = rng.integers(pad_id + 3, vocab, size=(n, length))
    return Encoded.from_lists([list(map(int, r)) for r in ids], None, rng.integers(0, 2, n), pad_id=pad_id)


def trial(name: str, n: int, length: int, tiny: bool, device: str, seed: int = 0, barrier=None) -> dict:
    """One trial's timed fine-tuning of n examples after a warm-up of 2 batches: examples/s, peak memory."""
    from seedlab.train.finetune import Hyperparameters, TrainingSettings, finetune

    model = build(name, tiny, device)
    config = model.config
    settings = TrainingSettings.from_cell(TRAINING[name])
    hp = Hyperparameters(learning_rate=LEARNING_RATE[name], batch_size=BATCH, epochs=1, max_seq_length=length)
    pad = config.pad_token_id
    finetune(model, random_split(2 * BATCH, length, config.vocab_size, pad, seed), hp, 0, 0, device=device,
             settings=settings)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    data = random_split(n, length, config.vocab_size, pad, seed + 1)
    if barrier is not None:
        barrier.wait()  # concurrent trials start their timed sections together
    start = time.perf_counter()
    finetune(model, data, hp, 1, 1, device=device, settings=settings)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"examples_per_s": n / seconds, "seconds": seconds, "n": n, "start": time.time() - seconds,
            "end": time.time(), "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "trainable_params": trainable, "total_params": sum(p.numel() for p in model.parameters())}


def _worker(name, n, length, tiny, device, seed, barrier, queue):
    if device == "cpu":
        torch.set_num_threads(1)  # the CPU check: k processes share the cores
    try:
        queue.put(trial(name, n, length, tiny, device, seed, barrier))
    except Exception as exc:  # a trial that does not fit (CUDA out of memory) is a result, not a crash
        barrier.abort()
        queue.put({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})


def concurrent(name: str, k: int, n: int, length: int, tiny: bool, device: str) -> dict:
    """k trials in k processes at once on one device: total examples/s over the shared wall time."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(name, n, length, tiny, device, i, barrier, queue)) for i in range(k)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=WORKER_TIMEOUT_S) for _ in procs]
    for p in procs:
        p.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"k": k, "error": errors[0]}
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    peaks = [r["peak_mem_gib"] for r in results if r["peak_mem_gib"] is not None]
    return {"k": k, "trainable_params": results[0]["trainable_params"], "total_params": results[0]["total_params"],
            "total_examples_per_s": sum(r["n"] for r in results) / wall,
            "per_trial_examples_per_s": [r["examples_per_s"] for r in results],
            "per_trial_peak_mem_gib": max(peaks) if peaks else None}


def suggested_fraction(rows: list[dict]) -> float | None:
    """1/k for the k of the highest total throughput among the k that ran (None when none did)."""
    ran = [r for r in rows if "error" not in r]
    return None if not ran else 1.0 / max(ran, key=lambda r: r["total_examples_per_s"])["k"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SHAPES), help=f"comma-separated, of: {', '.join(SHAPES)}")
    parser.add_argument("--concurrency", default="1,2,4,8", help="trials sharing one device")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--examples", type=int, default=512, help="timed examples per trial")
    parser.add_argument("--tiny", action="store_true", help="2-layer shapes, to check the script on CPU")
    parser.add_argument("--json", help="write the measurements here too")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    unknown = sorted(set(models) - set(SHAPES))
    if unknown:
        sys.exit(f"bench_lora_gpu: unknown model(s) {unknown} (valid: {', '.join(SHAPES)})")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.tiny:
        sys.exit("bench_lora_gpu: no CUDA device (valid on CPU: --tiny, which checks the script only)")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        where, total_gib = props.name, props.total_memory / 2**30
    else:
        where, total_gib = "cpu", None
    print(f"device: {where}{'' if total_gib is None else f', {total_gib:.0f} GiB'}; torch {torch.__version__}; "
          f"batch {BATCH}, length {args.length}{'; TINY shapes (a check of the script, not a measurement)' if args.tiny else ''}")
    out = {"device": where, "device_memory_gib": total_gib, "tiny": args.tiny, "batch": BATCH, "length": args.length,
           "models": {}}
    for name in models:
        rows = [concurrent(name, k, args.examples, args.length, args.tiny, device)
                for k in map(int, args.concurrency.split(","))]
        out["models"][name] = {"peft": PEFT[name], "training": TRAINING[name], "concurrency": rows,
                               "suggested_gpu_fraction": suggested_fraction(rows)}
        print(f"\n{name}: {'LoRA ' + json.dumps(PEFT[name]) if PEFT[name] else 'full fine-tuning'}, "
              f"training {json.dumps(TRAINING[name])}")
        print(f"{'trials':>7} {'total ex/s':>11} {'vs 1 trial':>10} {'peak GiB/trial':>15}")
        base = next((r["total_examples_per_s"] for r in rows if "error" not in r), None)
        for r in rows:
            if "error" in r:
                print(f"{r['k']:>7} {r['error']}")
                continue
            mem = "-" if r["per_trial_peak_mem_gib"] is None else f"{r['per_trial_peak_mem_gib']:.2f}"
            print(f"{r['k']:>7} {r['total_examples_per_s']:>11.1f} {r['total_examples_per_s'] / base:>9.2f}x {mem:>15}")
        print(f"suggested GPU fraction: {out['models'][name]['suggested_gpu_fraction']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
