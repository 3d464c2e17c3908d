"""Fine-tuning and prediction: the whole training loop, on one screen.

Randomness has three separate streams (see `seedlab.train.seeds`): the classifier head was initialised from
`init_seed` before this module sees the model; `order_seed` drives a private generator for the data
order; `dropout_seed` seeds the global torch RNG right before the loop, and nothing else in the loop
draws from it. On CPU the same inputs give bitwise-identical predictions.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float = 2e-5
    batch_size: int = 16
    epochs: float = 3.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_seq_length: int = 128
    grad_clip: float = 1.0

    def __post_init__(self):
        # 3 and 3.0 epochs are the same run: coerce to the declared types so trial keys agree.
        for name, spec in self.__dataclass_fields__.items():
            kind = {"int": int, "float": float}[spec.type] if isinstance(spec.type, str) else spec.type
            object.__setattr__(self, name, kind(getattr(self, name)))

    def as_params(self) -> dict:
        return asdict(self)


@dataclass
class Encoded:
    """A tokenized split, padded once to its longest row; each batch is cut to its own longest row."""

    input_ids: np.ndarray  # (n, longest) int64, right-padded with the pad id
    token_type_ids: np.ndarray  # (n, longest) int64
    lengths: np.ndarray  # (n,) real lengths
    labels: np.ndarray
    pad_id: int = 0

    @classmethod
    def from_lists(cls, input_ids: list, token_type_ids: list, labels, pad_id: int = 0) -> "Encoded":
        lengths = np.array([len(ids) for ids in input_ids], dtype=np.int64)
        ids = np.full((len(input_ids), max(lengths, default=1)), pad_id, dtype=np.int64)
        types = np.zeros_like(ids)
        for row, (a, t) in enumerate(zip(input_ids, token_type_ids)):
            ids[row, : len(a)] = a
            types[row, : len(t)] = t
        return cls(ids, types, lengths, np.asarray(labels), pad_id)

    def batch(self, index) -> dict:
        index = np.asarray(index)
        longest = int(self.lengths[index].max())
        ids = torch.from_numpy(self.input_ids[index, :longest])
        positions = torch.arange(longest)[None, :]
        mask = (positions < torch.from_numpy(self.lengths[index])[:, None]).long()
        return {"input_ids": ids, "token_type_ids": torch.from_numpy(self.token_type_ids[index, :longest]),
                "attention_mask": mask}


def encode(dataset, tokenizer, max_seq_length: int) -> Encoded:
    text_a, text_b = list(dataset["text_a"]), list(dataset["text_b"])
    if not any(text_b):
        enc = tokenizer(text_a, truncation=True, max_length=max_seq_length)
    else:
        enc = tokenizer(text_a, text_b, truncation=True, max_length=max_seq_length)
    types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return Encoded.from_lists(enc["input_ids"], types, list(dataset["label"]), tokenizer.pad_token_id or 0)


@dataclass
class FinetuneResult:
    loss_curve: list = field(default_factory=list)  # (step, mean training loss over the last log interval)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    steps: int = 0
    predictions: np.ndarray | None = None  # (m,) class ids, or values for regression
    probs: np.ndarray | None = None  # (m, C) float32 softmax, None for regression


def mixed_precision(device: str):
    """bf16 autocast on GPU (weights and optimizer state stay fp32); full precision on CPU."""
    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def finetune(model, train: Encoded, hp: Hyperparameters, order_seed: int, dropout_seed: int,
             device: str = "cpu", log_every: int = 10, on_log=None, param_groups=None,
             after_step=None) -> FinetuneResult:
    """Fine-tune `model` in place. `param_groups`: the AdamW parameter groups, by default decay / no-decay at
    `hp.weight_decay`, all at `hp.learning_rate` (`seedlab.train.mitigation.standard_param_groups`); a mitigation method
    passes `Prepared.param_groups(hp)`. `after_step(optimizer)`, if given, runs after every optimizer step and
    before the schedule advances (`Prepared.after_step`)."""
    from transformers import get_linear_schedule_with_warmup

    from seedlab.train.mitigation import standard_param_groups

    regression = model.config.num_labels == 1
    model.to(device).train()
    if param_groups is None:
        param_groups = standard_param_groups(model, hp)
    optimizer = torch.optim.AdamW(param_groups, lr=hp.learning_rate)
    steps_per_epoch = math.ceil(len(train.labels) / hp.batch_size)
    total_steps = max(1, int(round(steps_per_epoch * hp.epochs)))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * total_steps), total_steps)
    order = torch.Generator().manual_seed(order_seed)
    torch.manual_seed(dropout_seed)
    result, running, start, step = FinetuneResult(), [], time.perf_counter(), 0
    while step < total_steps:
        permutation = torch.randperm(len(train.labels), generator=order).tolist()
        for first in range(0, len(permutation), hp.batch_size):
            index = permutation[first : first + hp.batch_size]
            batch = {k: v.to(device) for k, v in train.batch(index).items()}
            target = torch.as_tensor(train.labels[index], device=device)
            with mixed_precision(device):
                logits = model(**batch).logits.float()
            if regression:
                loss = torch.nn.functional.mse_loss(logits.squeeze(-1), target.float())
            else:
                loss = torch.nn.functional.cross_entropy(logits, target.long())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip)
            optimizer.step()
            if after_step is not None:
                after_step(optimizer)
            scheduler.step()
            step += 1
            running.append(loss.detach())  # no .item() per step: it would stall the GPU pipeline
            if step % log_every == 0 or step == total_steps:
                result.loss_curve.append((step, float(torch.stack(running).mean())))
                running = []
                if on_log is not None:
                    on_log(step, total_steps, result.loss_curve[-1][1])
            if step >= total_steps:
                break
    result.steps, result.train_seconds = step, time.perf_counter() - start
    return result


@torch.no_grad()
def predict(model, data: Encoded, device: str = "cpu", batch_size: int = 128, *, return_states: bool = False):
    """(predictions, probs): argmax class ids and float32 softmax, or (values, None) for regression.

    With `return_states=True`, (predictions, probs, states) from the same single forward pass: `states` is
    (L, m, d) float16, each transformer layer's hidden state of the first token ([CLS]) per instance. The
    embedding output (hidden_states[0]) and the pooler are excluded, as in Du & Nguyen (2023).
    """
    model.to(device).eval()
    # Batches of similar lengths: each batch is cut to its longest row, so sorting by length removes most of the
    # padding the forward pass would compute on (the rows go back to their order below).
    by_length = np.argsort(data.lengths, kind="stable")
    outputs, layers = [], []
    for first in range(0, len(data.labels), batch_size):
        index = by_length[first : first + batch_size]
        batch = {k: v.to(device) for k, v in data.batch(index).items()}
        with mixed_precision(device):
            output = model(**batch, output_hidden_states=return_states)
        outputs.append(output.logits.float().cpu())
        if return_states:
            layers.append(torch.stack([h[:, 0, :] for h in output.hidden_states[1:]]).float().cpu())
    restore = torch.from_numpy(np.argsort(by_length, kind="stable"))  # sorted position of each row
    logits = torch.cat(outputs)[restore]
    if model.config.num_labels == 1:
        predictions, probs = logits.squeeze(-1).numpy().astype(np.float32), None
    else:
        probs = torch.softmax(logits, dim=-1).numpy().astype(np.float32)
        predictions = probs.argmax(axis=-1)
    if not return_states:
        return predictions, probs
    return predictions, probs, torch.cat(layers, dim=1)[:, restore].numpy().astype(np.float16)
