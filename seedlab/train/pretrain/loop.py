"""The pretraining loop: model initialisation, the masked-LM loss, evaluation, the schedule and `pretrain()`.

One pretraining seed decides everything random in a family, through separate streams (`pretrain_seeds`):

- initialisation: for a BERT size, `torch.manual_seed(seed)` then `BertModel(bert_config(size))`, exactly how
  `seedlab.train.models.resolve_model` draws a random backbone, so step 0 of pretraining IS the random-init
  baseline of that seed; for a continued named checkpoint ("minilm+mlm"), the published backbone as it is.
  Either way the MLM head is drawn afterwards from its own derived seed (the decoder is tied to the word
  embeddings; its transform and bias are new);
- data order: a private generator (`pretrain_order`) permutes the packed blocks every epoch;
- masking: a private generator (`pretrain_mask`);
- dropout: the global torch RNG, reseeded (`pretrain_dropout`) right before the loop.

The loss is computed on the masked positions only (the vocabulary projection runs on 15% of the tokens).
Evaluation: MLM loss / perplexity / accuracy on the fixed held-out set (`data.eval_set`), before and after.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from seedlab.errors import SeedlabError
from seedlab.train.pretrain.config import PretrainConfig, pretrain_seeds
from seedlab.train.pretrain.data import block_order, eval_set, load_blocks, mask_tokens


def init_mlm_model(size: str, pretrain_seed: int, vocab_size: int):
    """BertForMaskedLM whose backbone (pooler included) is resolve_model's backbone of the family: a BERT size's
    random backbone of the seed, or a continued named checkpoint's published one; the MLM head from `head_seed`."""
    from transformers import BertForMaskedLM, BertModel

    from seedlab.data.catalog import continued_base
    from seedlab.train.models import bert_config

    base = continued_base(size)
    if base is not None:
        from seedlab.data.pretrained import resolve_named_checkpoint

        backbone = BertModel.from_pretrained(resolve_named_checkpoint(base), use_safetensors=True)
        config = backbone.config
    else:
        config = bert_config(size, vocab_size)
        torch.manual_seed(pretrain_seed)  # as seedlab.train.models.resolve_model: the pretraining seed alone decides it
        backbone = BertModel(config)  # with its pooler, which MLM never trains (kept as drawn, saved, documented)
    torch.manual_seed(pretrain_seeds(pretrain_seed)["head_seed"])
    model = BertForMaskedLM(config)
    model.bert = backbone
    model.tie_weights()  # the decoder shares the (new) word embeddings
    return model


def family_tokenizer(size: str):
    """seedlab's WikiText-2 WordPiece for a BERT size; the checkpoint's own tokenizer for a continued one."""
    from seedlab.data.catalog import continued_base

    base = continued_base(size)
    if base is None:
        from seedlab.data.tokenizer import load_tokenizer

        return load_tokenizer()
    from transformers import AutoTokenizer

    from seedlab.data.pretrained import resolve_named_checkpoint

    return AutoTokenizer.from_pretrained(resolve_named_checkpoint(base))


def mlm_loss(model, inputs: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on the masked positions only (blocks are full: no attention mask needed)."""
    hidden = model.bert(input_ids=inputs).last_hidden_state
    masked = labels != -100
    logits = model.cls(hidden[masked]).float()
    loss = torch.nn.functional.cross_entropy(logits, labels[masked], reduction="sum")
    return loss / masked.sum().clamp(min=1) if reduction == "mean" else loss


@torch.no_grad()
def evaluate_mlm(model, inputs: torch.Tensor, labels: torch.Tensor, device: str = "cpu", batch_size: int = 64) -> dict:
    """Token-weighted MLM loss, perplexity (exp of the loss) and accuracy over a masked set."""
    was_training = model.training
    model.eval()
    total = correct = count = 0.0
    for first in range(0, len(inputs), batch_size):
        x, y = inputs[first : first + batch_size].to(device), labels[first : first + batch_size].to(device)
        with _autocast(device):
            hidden = model.bert(input_ids=x).last_hidden_state
            logits = model.cls(hidden[y != -100]).float()
        target = y[y != -100]
        total += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(-1) == target).sum().item()
        count += len(target)
    model.train(was_training)
    loss = total / max(count, 1)
    return {"mlm_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "mlm_accuracy": correct / max(count, 1),
            "masked_tokens": int(count)}


def _autocast(device: str):
    """bf16 mixed precision on GPU; full fp32 on CPU."""
    cuda = device.startswith("cuda")
    return torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda)


def lr_factor(step: int, config: PretrainConfig) -> float:
    """Linear warm-up to the peak, then linear (or cosine) decay to 0 at max_steps."""
    warmup = int(config.warmup_ratio * config.max_steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, config.max_steps - warmup)
    return max(0.0, 1 - progress) if config.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def configure_optimizer(model, config: PretrainConfig):
    """(AdamW, its schedule): weight decay on every weight but biases and LayerNorm, RoBERTa's betas and eps."""
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    from seedlab.train.finetune import adamw

    optimizer = adamw([{"params": decay, "weight_decay": config.weight_decay},
                       {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))


@dataclass
class PretrainResult:
    model: torch.nn.Module
    tokenizer: object
    config: PretrainConfig
    loss_curve: list = field(default_factory=list)  # (step, mean training MLM loss over the last interval)
    before: dict = field(default_factory=dict)  # held-out mlm_loss / perplexity / mlm_accuracy at step 0
    after: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    examples_per_second: float = 0.0
    tokens_per_second: float = 0.0
    num_train_blocks: int = 0
    device: str = "cpu"

    def metrics(self) -> list[tuple[str, float, int]]:
        """(key, value, step) triples for MLflow."""
        rows = [("train_loss", loss, step) for step, loss in self.loss_curve]
        for when, values in (("before", self.before), ("after", self.after)):
            rows += [(f"val_{name}_{when}", v, 0 if when == "before" else self.config.max_steps)
                     for name, v in values.items() if name != "masked_tokens"]
        rows += [("examples_per_second", self.examples_per_second, 0), ("tokens_per_second", self.tokens_per_second, 0),
                 ("train_seconds", self.train_seconds, 0)]
        return rows


def pretrain(config: PretrainConfig, device: str | None = None, on_log=None) -> PretrainResult:
    """Pretrain one (size, seed) family member with masked-LM. Deterministic on CPU for a given thread count."""
    config.validate()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    seeds = pretrain_seeds(config.pretrain_seed)
    tokenizer = family_tokenizer(config.size)
    train = load_blocks("train", tokenizer, config.max_seq_length, config.max_train_lines)
    if len(train) == 0:
        raise SeedlabError(f"max_train_lines={config.max_train_lines} gives no block of {config.max_seq_length} tokens")
    val_inputs, val_labels = eval_set(tokenizer, config.max_seq_length, config.eval_blocks)
    model = init_mlm_model(config.size, config.pretrain_seed, tokenizer.vocab_size).to(device)
    before = evaluate_mlm(model, val_inputs, val_labels, device)
    optimizer, scheduler = configure_optimizer(model, config)
    batches = block_order(len(train), config.batch_size, torch.Generator().manual_seed(seeds["order_seed"]))
    masking = torch.Generator().manual_seed(seeds["mask_seed"])
    torch.manual_seed(seeds["dropout_seed"])  # dropout is the only draw from the global RNG in the loop
    model.train()
    curve, running, examples, start = [], torch.zeros((), device=device), 0, time.perf_counter()
    for step in range(1, config.max_steps + 1):
        batch = train[next(batches)]
        inputs, labels = mask_tokens(batch, tokenizer, masking, config.mlm_probability)
        with _autocast(device):
            loss = mlm_loss(model, inputs.to(device), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        running += loss.detach()
        examples += len(batch)
        if step % config.log_every == 0 or step == config.max_steps:
            curve.append((step, running.item() / (step - (curve[-1][0] if curve else 0))))
            running.zero_()
            if not math.isfinite(curve[-1][1]):  # fail loudly: never save or log a diverged model
                raise SeedlabError(f"pretraining {config.size} seed {config.pretrain_seed} diverged by step {step} "
                                   f"(loss {curve[-1][1]}); lower learning_rate (was {config.learning_rate:g})")
            if on_log is not None:
                on_log(step, config.max_steps, curve[-1][1])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    after = evaluate_mlm(model, val_inputs, val_labels, device)
    return PretrainResult(model, tokenizer, config, curve, before, after, seconds, examples / seconds,
                          examples * config.max_seq_length / seconds, len(train), device)
