"""AdamW's fused kernel vs torch's default per-tensor loop, in a MiniLM-L6 training step on one CPU thread.

    python benchmarks/bench_optimizer.py            # ~1 minute on 2 cores
    python benchmarks/bench_optimizer.py --steps 30 --batch 32 --length 64

The model has MiniLM-L6's shapes (BERT, 6 layers, hidden 384, vocabulary 30,522: the checkpoint `make demo`
fine-tunes), built from its config with random weights: the optimizer's cost depends on the shapes only. Each
variant runs the same batches (forward, backward, clipping, optimizer step) and reports the median time of the
step and of the optimizer step alone. The baseline is `torch.optim.AdamW(..., foreach=False)`, what seedlab used
before `seedlab.train.finetune.adamw`; the last line is the ratio of whole training steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def measure(make_optimizer, steps: int, batch: int, length: int) -> dict:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, num_labels=2)
    model = BertForSequenceClassification(config).train()
    optimizer = make_optimizer(model.parameters())
    inputs = torch.randint(0, config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(batch, dtype=torch.long)
    whole, update = [], []
    for step in range(steps + 2):  # the first two steps warm up (allocations, the optimizer's state)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=inputs, labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        before_update = time.perf_counter()
        optimizer.step()
        done = time.perf_counter()
        if step >= 2:
            whole.append(done - started)
            update.append(done - before_update)
    return {"step_s": statistics.median(whole), "optimizer_s": statistics.median(update)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=15, help="timed training steps per variant (default 15)")
    ap.add_argument("--batch", type=int, default=16, help="batch size (default 16, the demo's)")
    ap.add_argument("--length", type=int, default=32, help="tokens per row (default 32, ~an SST-2 batch's longest)")
    args = ap.parse_args(argv)

    from seedlab.train.finetune import adamw

    torch.set_num_threads(1)  # one thread per trial, as sweeps run on CPU
    variants = {"loop (torch default on CPU, the baseline)": lambda ps: torch.optim.AdamW(ps, lr=1e-4, foreach=False),
                "seedlab.train.finetune.adamw (fused)": lambda ps: adamw(list(ps), lr=1e-4)}
    results = {name: measure(make, args.steps, args.batch, args.length) for name, make in variants.items()}
    for name, r in results.items():
        print(f"{name:44s} step {r['step_s'] * 1e3:7.1f} ms   of which optimizer {r['optimizer_s'] * 1e3:6.1f} ms "
              f"({r['optimizer_s'] / r['step_s']:.0%})")
    base, fused = results.values()
    print(f"training step, fused AdamW vs loop: {base['step_s'] / fused['step_s']:.2f}x faster "
          f"(optimizer alone {base['optimizer_s'] / fused['optimizer_s']:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
