"""Fine-tuning and prediction: the whole training loop, on one screen.

Randomness has three separate streams (see `seedlab.train.seeds`): the classifier head was initialised from
`init_seed` before this module sees the model (and a LoRA adapter from `lora_seed`); `order_seed` drives a private
generator for the data order; `dropout_seed` seeds the global torch RNG right before the loop, and nothing else in
the loop draws from it. On CPU the same inputs give bitwise-identical predictions.

Large models (`TrainingSettings`): frozen weights in bf16 on GPU, gradient checkpointing, and gradient accumulation,
which splits each batch of `batch_size` rows into micro-batches (`batch_size` stays the effective batch: the
optimizer steps, learning-rate schedule and loss scale do not change with it).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from seedlab.errors import SeedlabError

TORCH_DTYPES = ("float32", "bfloat16")


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


@dataclass(frozen=True)
class TrainingSettings:
    """How a trial is computed on large models, apart from its hyperparameters.

    torch_dtype: "bfloat16" keeps the frozen weights in bf16 on GPU (LoRA's base model: half the memory); trainable
        parameters stay fp32 under bf16 autocast either way, so under full fine-tuning it changes nothing. On CPU
        every weight is fp32 (the recorded `torch_dtype` param says which was used).
    gradient_checkpointing: recompute activations in the backward pass instead of storing them (transformers'
        non-reentrant checkpointing of each layer).
    grad_accumulation: micro-batches per optimizer step; `Hyperparameters.batch_size` stays the effective batch.
    """

    torch_dtype: str = "float32"
    gradient_checkpointing: bool = False
    grad_accumulation: int = 1

    def __post_init__(self):
        if self.torch_dtype not in TORCH_DTYPES:
            raise SeedlabError(f"invalid torch_dtype {self.torch_dtype!r} (valid: {', '.join(TORCH_DTYPES)})")
        if not isinstance(self.gradient_checkpointing, bool):
            raise SeedlabError(f"invalid gradient_checkpointing {self.gradient_checkpointing!r} (valid: True, False)")
        ga = self.grad_accumulation
        if isinstance(ga, bool) or not isinstance(ga, int) or ga < 1:
            raise SeedlabError(f"invalid grad_accumulation {ga!r} (valid: an integer >= 1)")

    @classmethod
    def from_cell(cls, value) -> "TrainingSettings":
        value = dict(value or {})
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise SeedlabError(f"unknown training setting(s) {unknown} (valid: {', '.join(cls.__dataclass_fields__)})")
        return cls(**value)

    def as_cell(self) -> dict | None:
        """The canonical form for a resolved cell; None when every setting is the default (the cells of runs logged
        before these settings existed keep their trial keys)."""
        return None if self == TrainingSettings() else asdict(self)

    def weights_dtype(self, device: str) -> str:
        """The dtype frozen weights have on `device`: bf16 on GPU only."""
        return self.torch_dtype if str(device).startswith("cuda") else "float32"


@dataclass
class Encoded:
    """A tokenized split, padded once to its longest row; each batch is cut to its own longest row.

    `token_type_ids` is None for a model that takes none. `padding_side` (the tokenizer's) says where a batch puts
    its padding; left-padded batches carry `position_ids` counting real tokens only, so a row's positions are the
    same on either side.
    """

    input_ids: np.ndarray  # (n, longest) int64, real tokens first, then the pad id
    token_type_ids: np.ndarray | None  # (n, longest) int64, or None
    lengths: np.ndarray  # (n,) real lengths
    labels: np.ndarray
    pad_id: int = 0
    padding_side: str = "right"

    @classmethod
    def from_lists(cls, input_ids: list, token_type_ids: list | None, labels, pad_id: int = 0,
                   padding_side: str = "right") -> "Encoded":
        if padding_side not in ("right", "left"):
            raise SeedlabError(f"invalid padding side {padding_side!r} (valid: right, left)")
        lengths = np.array([len(ids) for ids in input_ids], dtype=np.int64)
        ids = np.full((len(input_ids), max(lengths, default=1)), pad_id, dtype=np.int64)
        types = None if token_type_ids is None else np.zeros_like(ids)
        for row, a in enumerate(input_ids):
            ids[row, : len(a)] = a
            if types is not None:
                types[row, : len(token_type_ids[row])] = token_type_ids[row]
        return cls(ids, types, lengths, np.asarray(labels), pad_id, padding_side)

    def batch(self, index) -> dict:
        index = np.asarray(index)
        longest = int(self.lengths[index].max())
        lengths = torch.from_numpy(self.lengths[index])[:, None]
        columns = torch.arange(longest)[None, :]
        if self.padding_side == "right":
            mask = (columns < lengths).long()
            out = {"input_ids": torch.from_numpy(self.input_ids[index, :longest])}
            if self.token_type_ids is not None:
                out["token_type_ids"] = torch.from_numpy(self.token_type_ids[index, :longest])
            out["attention_mask"] = mask
            return out
        # left: column c of the batch holds the row's token c - (longest - length)
        source = columns - (longest - lengths)
        mask = (source >= 0).long()
        gather = source.clamp(min=0).numpy()
        rows = index[:, None]
        out = {"input_ids": torch.where(mask.bool(), torch.from_numpy(self.input_ids[rows, gather]), self.pad_id)}
        if self.token_type_ids is not None:
            out["token_type_ids"] = torch.from_numpy(self.token_type_ids[rows, gather]) * mask
        out["attention_mask"] = mask
        out["position_ids"] = source.clamp(min=0)
        return out


def encode(dataset, tokenizer, max_seq_length: int, *, input_names=None) -> Encoded:
    """Tokenize a split. `input_names`: the fields the model takes (`seedlab.train.models.model_inputs`); without
    it, token_type_ids are kept (BERT's inputs)."""
    text_a, text_b = list(dataset["text_a"]), list(dataset["text_b"])
    if not any(text_b):
        enc = tokenizer(text_a, truncation=True, max_length=max_seq_length)
    else:
        enc = tokenizer(text_a, text_b, truncation=True, max_length=max_seq_length)
    types = None
    if input_names is None or "token_type_ids" in input_names:
        types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return Encoded.from_lists(enc["input_ids"], types, list(dataset["label"]), tokenizer.pad_token_id or 0,
                              getattr(tokenizer, "padding_side", "right"))


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


def prepare_for_training(model, settings: TrainingSettings, device: str) -> None:
    """Apply `settings` to `model` in place: gradient checkpointing, and bf16 frozen weights on GPU."""
    if settings.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise SeedlabError(f"{type(model).__name__} does not support gradient checkpointing "
                               "(valid: training={'gradient_checkpointing': False})")
        # non-reentrant: works when the inputs need no gradient (frozen embeddings under LoRA). transformers 5
        # renamed the method (activation_checkpointing_enable); older versions have only the first name.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if settings.weights_dtype(device) == "bfloat16":
        for param in model.parameters():
            if not param.requires_grad:
                param.data = param.data.to(torch.bfloat16)


def adamw(param_groups, **options) -> torch.optim.AdamW:
    """torch's AdamW over `param_groups` (a list of dicts or of tensors), with its fused kernel wherever torch has
    one for the parameters (floating point, on CPU or CUDA): one pass over all of them instead of a loop per
    tensor. On CPU the loop took ~27% of a MiniLM-L6 training step, the fused kernel ~4%
    (`benchmarks/bench_optimizer.py`); elsewhere torch's default implementation."""
    tensors = [p for g in param_groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fusable = bool(tensors) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
    return torch.optim.AdamW(param_groups, fused=True if fusable else None, **options)


def finetune(model, train: Encoded, hp: Hyperparameters, order_seed: int, dropout_seed: int,
             device: str = "cpu", log_every: int = 10, on_log=None, param_groups=None,
             after_step=None, settings: TrainingSettings | None = None) -> FinetuneResult:
    """Fine-tune `model` in place. `param_groups`: the AdamW parameter groups, by default decay / no-decay at
    `hp.weight_decay`, all at `hp.learning_rate` (`seedlab.train.mitigation.standard_param_groups`); a mitigation method
    passes `Prepared.param_groups(hp)`. Parameters that do not require gradients (LoRA's frozen base) are left out.
    `after_step(optimizer)`, if given, runs after every optimizer step and before the schedule advances
    (`Prepared.after_step`). `settings`: `TrainingSettings` (default: fp32, no checkpointing, no accumulation)."""
    from transformers import get_linear_schedule_with_warmup

    from seedlab.train.mitigation import standard_param_groups

    settings = settings or TrainingSettings()
    regression = model.config.num_labels == 1
    prepare_for_training(model, settings, device)
    model.to(device).train()
    if param_groups is None:
        param_groups = standard_param_groups(model, hp)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if len(trainable) < sum(1 for _ in model.parameters()):  # frozen parameters: keep them out of AdamW
        param_groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in param_groups]
        param_groups = [g for g in param_groups if g["params"]]
    optimizer = adamw(param_groups, lr=hp.learning_rate)
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
            optimizer.zero_grad(set_to_none=True)
            parts = [index] if settings.grad_accumulation == 1 else [
                part for part in np.array_split(np.asarray(index), settings.grad_accumulation) if len(part)]
            loss = 0.0
            for part in parts:  # the batch's micro-batches: gradients add up to the whole batch's mean loss
                batch = {k: v.to(device) for k, v in train.batch(part).items()}
                target = torch.as_tensor(train.labels[part], device=device)
                with mixed_precision(device):
                    logits = model(**batch).logits.float()
                if regression:
                    part_loss = torch.nn.functional.mse_loss(logits.squeeze(-1), target.float())
                else:
                    part_loss = torch.nn.functional.cross_entropy(logits, target.long())
                if len(parts) > 1:
                    part_loss = part_loss * (len(part) / len(index))
                part_loss.backward()
                loss = loss + part_loss.detach()
            torch.nn.utils.clip_grad_norm_(trainable, hp.grad_clip)
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
    (L, m, d) float16, each transformer layer's hidden state of the token the classifier reads per instance: the
    first token ([CLS]) of an encoder, the last real token of a decoder. The embedding output (hidden_states[0])
    and the pooler are excluded, as in Du & Nguyen (2023).
    """
    from seedlab.train.models import is_decoder_only

    last_token = is_decoder_only(model.config)
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
            rows = torch.arange(len(index), device=batch["input_ids"].device)
            # the decoder classifier's own rule: the rightmost token that is not the pad id
            token = ((batch["input_ids"] != data.pad_id).int() * torch.arange(batch["input_ids"].shape[1],
                     device=rows.device)).argmax(-1) if last_token else torch.zeros_like(rows)
            layers.append(torch.stack([h[rows, token, :] for h in output.hidden_states[1:]]).float().cpu())
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
