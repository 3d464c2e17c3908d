"""GPU throughput and memory per BERT size, and trials sharing one GPU (fractional allocation).

    python benchmarks/bench_gpu.py [--sizes tiny,mini,small,medium,base,large] [--concurrency 1,2,4]

Needs only torch and transformers (runs on a bare GPU host). Inputs are random token ids at a fixed
length (throughput does not depend on the token values), so no data or tokenizer is needed.

1. Per size, one process: fine-tuning through `seedlab.train.finetune.finetune` (bf16 autocast) and masked-LM
   pretraining steps (`seedlab.train.pretrain` when present, else a plain BertForMaskedLM step), examples/s and
   peak GPU memory.
2. Per size in --concurrency-sizes, k = 1, 2, 4 fine-tuning processes on the same GPU at once: that is what
   Ray's fractional GPUs (1/k GPU per trial) do -- they only set CUDA_VISIBLE_DEVICES, every trial shares
   the device. Total examples/s against the k = 1 baseline of the same run, and how many trials fit in memory.
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

VOCAB = 8192
BATCH = 32


def random_split(n: int, length: int, seed: int):
    from seedlab.train.finetune import Encoded

    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=(n, length))
    ids[:, 0] = 2  # [CLS]
    return Encoded.from_lists([list(map(int, r)) for r in ids], [[0] * length] * n, rng.integers(0, 2, n))


def classifier(size: str):
    from transformers import BertForSequenceClassification

    from seedlab.train.models import bert_config

    torch.manual_seed(0)
    return BertForSequenceClassification(bert_config(size, VOCAB, 2))


def finetune_throughput(size: str, n: int, length: int, seed: int = 0, barrier=None) -> dict:
    from seedlab.train.finetune import Hyperparameters, finetune

    torch.cuda.reset_peak_memory_stats()
    model = classifier(size)
    hp = Hyperparameters(learning_rate=2e-5, batch_size=BATCH, epochs=1, max_seq_length=length)
    finetune(model, random_split(4 * BATCH, length, seed), hp, 0, 0, device="cuda")  # warm-up
    torch.cuda.synchronize()
    data = random_split(n, length, seed + 1)
    if barrier is not None:
        barrier.wait()  # concurrent trials start their timed sections together
    start = time.perf_counter()
    finetune(model, data, hp, 1, 1, device="cuda")
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"examples_per_s": n / seconds, "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
            "start": time.time() - seconds, "end": time.time()}


def pretrain_throughput(size: str, steps: int, length: int) -> dict:
    """Masked-LM steps: seedlab's own pretraining loop when it exposes one, else a plain step loop."""
    from transformers import BertForMaskedLM

    from seedlab.train.finetune import mixed_precision
    from seedlab.train.models import bert_config

    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = BertForMaskedLM(bert_config(size, VOCAB)).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, VOCAB, (BATCH, length), device="cuda")
    labels = torch.where(torch.rand(ids.shape, device="cuda") < 0.15, ids, torch.full_like(ids, -100))

    def step():
        with mixed_precision("cuda"):
            loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return {"examples_per_s": steps * BATCH / (time.perf_counter() - start),
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30}


def _worker(size, n, length, seed, barrier, queue):
    queue.put({**finetune_throughput(size, n, length, seed, barrier), "n": n})


def concurrent(size: str, k: int, n: int, length: int) -> dict:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(size, n, length, i, barrier, queue)) for i in range(k)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"total_examples_per_s": sum(r["n"] for r in results) / wall,
            "per_trial_peak_mem_gib": max(r["peak_mem_gib"] for r in results)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="tiny,mini,small,medium,base,large")
    parser.add_argument("--concurrency-sizes", default="mini,base")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device")
    props = torch.cuda.get_device_properties(0)
    total_gib = props.total_memory / 2**30
    print(f"device: {props.name}, {total_gib:.0f} GiB; torch {torch.__version__}; batch {BATCH}, length {args.length}, "
          f"bf16 autocast")
    out = {"device": props.name, "sizes": {}, "concurrency": {}}
    print(f"\n{'size':>7} {'fine-tune ex/s':>15} {'mem GiB':>8} {'pretrain ex/s':>14} {'mem GiB':>8} {'fit by memory':>14}")
    for size in args.sizes.split(","):
        ft = finetune_throughput(size, args.examples, args.length)
        pt = pretrain_throughput(size, 50, args.length)
        fit = int(total_gib // max(ft["peak_mem_gib"], 1e-3))
        out["sizes"][size] = {"finetune": ft, "pretrain": pt, "trials_fit_by_memory": fit}
        print(f"{size:>7} {ft['examples_per_s']:>15.0f} {ft['peak_mem_gib']:>8.2f} {pt['examples_per_s']:>14.0f} "
              f"{pt['peak_mem_gib']:>8.2f} {fit:>14}")
    print(f"\n{'size':>7} {'trials/GPU':>10} {'total ex/s':>11} {'vs 1 trial':>10} {'mem/trial GiB':>14}")
    for size in args.concurrency_sizes.split(","):
        base = None
        for k in map(int, args.concurrency.split(",")):
            r = concurrent(size, k, args.examples, args.length)
            base = base or r["total_examples_per_s"]
            out["concurrency"][f"{size}/{k}"] = r
            print(f"{size:>7} {k:>10} {r['total_examples_per_s']:>11.0f} {r['total_examples_per_s'] / base:>9.2f}x "
                  f"{r['per_trial_peak_mem_gib']:>14.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
