"""Mitigation methods for fine-tuning instability, as re-assessed by Du & Nguyen (ACL 2023, arXiv 2302.07778).

One function per method (`standard`, `mixout`, `llrd`, `reinit`, `wd_pre`) and the dispatcher `prepare`.
Each takes the freshly resolved classifier (`seedlab.train.models.resolve_model`) and returns a `Prepared`:

- `prepared.model`: the model to fine-tune (modified in place; the same object that was passed in);
- `prepared.param_groups(hp)`: the AdamW parameter groups, used by `seedlab.train.finetune.finetune` instead of its own
  (every group keeps seedlab's decay / no-decay split: biases and LayerNorm parameters get no weight decay);
- `prepared.after_step(optimizer)`: called after every `optimizer.step()` and before `scheduler.step()` (so a
  group's `lr` is the one the step just used); a no-op except for `wd_pre`.

Du & Nguyen re-assess these methods with the settings of Zhang et al. (ICLR 2021, "Revisiting Few-sample BERT
Fine-tuning", arXiv 2006.05987), whose released code (asappresearch/revisit-bert-finetuning) is the reference
implementation followed here; where this module departs from it, the function's docstring says so.

Randomness: `reinit` draws from a private stream derived from `init_seed` (the global RNG is left as it was);
`mixout` draws its masks from the global torch RNG during training, which `finetune` seeds with `dropout_seed`
right before the loop, so the dropout seed controls mixout exactly as it controls dropout.

Method options (`prepare(..., options=...)`), all optional; unknown keys are an error:
    mixout: p=0.1, mask="unit" | "element", include_head=True, disable_dropout=True
    llrd:   decay=0.95
    reinit: layers=5, pooler=True
    wd_pre: strength=None (None: the run's `weight_decay`)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from seedlab.errors import SeedlabError, choice_error

METHODS = ("standard", "mixout", "llrd", "reinit", "wd_pre")


def is_no_decay(name: str) -> bool:
    """Biases and LayerNorm parameters get no weight decay: the rule `seedlab.train.finetune` has always used."""
    return name.endswith("bias") or "LayerNorm" in name


def decay_groups(named_params, weight_decay: float, **extra) -> list[dict]:
    """[decay group, no-decay group] for `named_params` (empty groups dropped), each with the `extra` keys."""
    named_params = list(named_params)
    decay = [p for n, p in named_params if not is_no_decay(n)]
    no_decay = [p for n, p in named_params if is_no_decay(n)]
    groups = [{"params": decay, "weight_decay": weight_decay, **extra},
              {"params": no_decay, "weight_decay": 0.0, **extra}]
    return [g for g in groups if g["params"]]


@dataclass
class Prepared:
    """A model made ready for one mitigation method, with the optimizer groups and the per-step hook it needs."""

    model: nn.Module
    method: str
    options: dict = field(default_factory=dict)  # the method's options, defaults filled in
    groups_fn: Callable | None = None  # hp -> param groups; None: `standard_param_groups`
    hook: Callable | None = None  # optimizer -> None, after each optimizer step

    def param_groups(self, hp) -> list[dict]:
        """AdamW parameter groups for hyperparameters `hp` (`seedlab.train.finetune.Hyperparameters`)."""
        if self.groups_fn is None:
            return standard_param_groups(self.model, hp)
        return self.groups_fn(hp)

    def after_step(self, optimizer) -> None:
        if self.hook is not None:
            self.hook(optimizer)


def standard_param_groups(model: nn.Module, hp) -> list[dict]:
    """Exactly the groups `seedlab.train.finetune` built before mitigation methods existed: one decay group at
    `hp.weight_decay`, one no-decay group at 0; no per-group `lr`, so AdamW's `lr=hp.learning_rate` applies."""
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if not is_no_decay(n)], "weight_decay": hp.weight_decay},
            {"params": [p for n, p in named if is_no_decay(n)], "weight_decay": 0.0}]


def _options(method: str, given: dict | None, defaults: dict) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise SeedlabError(f"unknown option(s) {unknown} for mitigation method {method!r} "
                           f"(valid: {', '.join(defaults) or 'none'})")
    return {**defaults, **given}


def _backbone(model: nn.Module) -> nn.Module:
    """The pretrained encoder (`model.bert` for BERT, `model.roberta` for RoBERTa): everything but the new head."""
    base = getattr(model, "base_model", None)
    if base is None or base is model or not hasattr(base, "encoder") or not hasattr(base, "embeddings"):
        raise SeedlabError(f"mitigation methods need a BERT-style model with a backbone, got {type(model).__name__}")
    return base


# ----------------------------------------------------------------------------------------------------------------
# standard


def standard(model: nn.Module, init_seed: int = 0, options: dict | None = None) -> Prepared:
    """Standard fine-tuning (Devlin et al. 2019), the baseline of Du & Nguyen (2023): nothing changes."""
    _options("standard", options, {})
    return Prepared(model, "standard", {})


# ----------------------------------------------------------------------------------------------------------------
# mixout


def mix_weights(weight: torch.Tensor, target: torch.Tensor, p: float, mask: str = "unit") -> torch.Tensor:
    """Lee et al.'s mixout of `weight` toward `target`: (B*W + (1-B)*T - p*T) / (1-p), B ~ Bernoulli(1-p).

    The expectation over B is W; where W == T the result is T. `mask="unit"` draws one Bernoulli per input unit
    (column) of a 2-D weight and shares it across output rows, as the reference implementation does (the analogue
    of dropping an input neuron); `mask="element"` draws one per element. Draws come from the global torch RNG of
    the weight's device. Gradients are the autograd ones, B/(1-p); the reference's hand-written backward omits the
    constant 1/(1-p), which Adam's update is invariant to up to its epsilon and gradient clipping.
    """
    if weight.dim() == 2 and mask == "unit":
        shape = (1, weight.shape[1])
    else:
        shape = weight.shape
    keep = torch.empty(shape, device=weight.device, dtype=weight.dtype).bernoulli_(1.0 - p)
    return (keep * weight + (1.0 - keep) * target - p * target) / (1.0 - p)


class MixLinear(nn.Linear):
    """An `nn.Linear` whose weight is mixed out toward `target` in training mode; a plain linear layer in eval.

    It keeps the replaced layer's own `weight` and `bias` Parameters (same objects, same names, same state-dict
    keys). The target is a non-persistent buffer, so it follows `.to(device)` and stays out of the state dict.
    The bias is not mixed (as in the reference implementation).
    """

    def __init__(self, linear: nn.Linear, p: float, target: torch.Tensor | None = None, mask: str = "unit"):
        nn.Module.__init__(self)  # not nn.Linear.__init__: that would allocate and draw a fresh init
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.p, self.mask = float(p), mask
        source = linear.weight if target is None else target
        self.register_buffer("target", source.detach().clone(), persistent=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return nn.functional.linear(input, self.weight, self.bias)
        return nn.functional.linear(input, mix_weights(self.weight, self.target, self.p, self.mask), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mixout={self.p}, mask={self.mask}"


def mixout(model: nn.Module, init_seed: int = 0, options: dict | None = None) -> Prepared:
    """Mixout (Lee, Cho & Kang, ICLR 2020, arXiv 1909.11299) with p = 0.1, as in Du & Nguyen (2023).

    Following the reference implementations (Lee et al.'s and Zhang et al.'s `run_glue.py --mixout`):
    - every `nn.Linear` of the model becomes a `MixLinear` whose target is its weight at this moment: the
      pretrained weight for the encoder and the pooler, and for the new classifier head its initialisation (from
      `init_seed`), i.e. Lee et al.'s mixout(w0) for the output layer. `include_head=False` leaves the head a plain
      Linear instead;
    - every `nn.Dropout` is set to p = 0 (`disable_dropout=True`): mixout replaces dropout as the regulariser;
    - `p` is the probability that a weight (unit) is swapped for its target: B ~ Bernoulli(1 - p);
    - `mask="unit"` (reference) or `"element"` (one draw per weight), see `mix_weights`.
    In eval mode every MixLinear is its plain linear layer (prediction and representations are unaffected).
    """
    opts = _options("mixout", options, {"p": 0.1, "mask": "unit", "include_head": True, "disable_dropout": True})
    if not 0.0 <= float(opts["p"]) < 1.0:
        raise SeedlabError(f"invalid mixout p {opts['p']!r} (valid: 0 <= p < 1)")
    if opts["mask"] not in ("unit", "element"):
        raise choice_error("mixout mask", opts["mask"], ("unit", "element"))
    in_backbone = {id(m) for m in _backbone(model).modules()}
    replace = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Dropout) and opts["disable_dropout"]:
                child.p = 0.0
            elif isinstance(child, nn.Linear) and not isinstance(child, MixLinear):
                if opts["include_head"] or id(child) in in_backbone:
                    replace.append((parent, name, child))
    for parent, name, child in replace:
        setattr(parent, name, MixLinear(child, opts["p"], mask=opts["mask"]))
    return Prepared(model, "mixout", opts)


# ----------------------------------------------------------------------------------------------------------------
# layer-wise learning-rate decay


def llrd_param_groups(model: nn.Module, hp, decay: float = 0.95) -> list[dict]:
    """Zhang et al.'s layer-wise learning-rate decay groups, for an encoder of L layers (0-based index i):

        classifier head and pooler (everything outside embeddings and encoder)   lr
        encoder layer i                                                            lr * decay ** (L - i)
        embeddings                                                                 lr * decay ** (L + 1)

    so the top layer (i = L - 1) gets lr * decay and each layer below one more factor, the embeddings one more
    than the bottom layer. Each level keeps the decay / no-decay split; unlike the reference (which puts head and
    pooler in one group with weight decay 0), the head and pooler also keep it, as in standard fine-tuning.
    Every group carries its own `lr`, which the warm-up/decay schedule scales (LambdaLR multiplies each group's
    initial lr), so the ratios between levels hold at every step.
    """
    base = _backbone(model)
    layers = list(base.encoder.layer)
    depth = len(layers)
    level_of: dict[int, int] = {}  # parameter -> decay steps below the head: layer i -> L - i, embeddings -> L + 1
    for i, layer in enumerate(layers):
        level_of.update({id(p): depth - i for p in layer.parameters()})
    level_of.update({id(p): depth + 1 for p in base.embeddings.parameters()})
    by_level: dict[int, list] = {}
    for name, p in model.named_parameters():
        by_level.setdefault(level_of.get(id(p), 0), []).append((name, p))
    groups = []
    for level in sorted(by_level):  # head and pooler first, then the top layer down to the embeddings
        groups += decay_groups(by_level[level], hp.weight_decay, lr=hp.learning_rate * decay**level)
    return groups


def llrd(model: nn.Module, init_seed: int = 0, options: dict | None = None) -> Prepared:
    """Layer-wise learning-rate decay (Howard & Ruder 2018; Zhang et al. 2021), 0.95 per layer from the top as in
    Du & Nguyen (2023). See `llrd_param_groups` for the exact learning rate of every parameter."""
    opts = _options("llrd", options, {"decay": 0.95})
    if not 0.0 < float(opts["decay"]) <= 1.0:
        raise SeedlabError(f"invalid llrd decay {opts['decay']!r} (valid: 0 < decay <= 1)")
    return Prepared(model, "llrd", opts, groups_fn=lambda hp: llrd_param_groups(model, hp, float(opts["decay"])))


# ----------------------------------------------------------------------------------------------------------------
# re-initialising the top layers


@contextlib.contextmanager
def _seeded_rng(seed: int, devices):
    """Run the body with the global RNG of `devices` seeded with `seed`, restoring every state afterwards."""
    cuda = sorted({d.index if d.index is not None else torch.cuda.current_device()
                   for d in devices if d.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def reinit(model: nn.Module, init_seed: int = 0, options: dict | None = None) -> Prepared:
    """Re-initialise the top `layers` encoder layers (default 5, as Du & Nguyen 2023 after Zhang et al. 2021) and
    the pooler (`pooler=True`), then fine-tune as standard.

    The number of layers is capped at the encoder's depth (a 2-layer tiny model re-initialises both layers).
    Each module is re-initialised with the model's own `_init_weights` (normal(0, initializer_range) weights,
    zero biases, LayerNorm to (1, 0)), the way the model drew them at construction, whereas the reference writes
    the same distributions by hand. The draws come from the global RNG seeded, inside a forked RNG state (the
    caller's state is restored afterwards), with `derive_seed(init_seed, "reinit")`: a pure function of
    `init_seed` but a different stream from the one that drew the classifier head from `init_seed`.
    """
    from seedlab.train.seeds import derive_seed

    opts = _options("reinit", options, {"layers": 5, "pooler": True})
    if not isinstance(opts["layers"], int) or isinstance(opts["layers"], bool) or opts["layers"] < 0:
        raise SeedlabError(f"invalid reinit layers {opts['layers']!r} (valid: a non-negative integer)")
    base = _backbone(model)
    layers = list(base.encoder.layer)
    count = min(opts["layers"], len(layers))
    modules = [m for layer in layers[len(layers) - count:] for m in layer.modules()]
    pooler = getattr(base, "pooler", None)
    if opts["pooler"] and pooler is not None:
        modules += list(pooler.modules())
    tensors = [t for m in modules for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))]
    for t in tensors:  # transformers skips tensors flagged as loaded from a checkpoint
        if hasattr(t, "_is_hf_initialized"):
            del t._is_hf_initialized
    with _seeded_rng(derive_seed(init_seed, "reinit"), {t.device for t in tensors}):
        for module in modules:
            model._init_weights(module)
    return Prepared(model, "reinit", {**opts, "layers_reinitialised": count})


# ----------------------------------------------------------------------------------------------------------------
# weight decay toward the pretrained weights


def wd_pre(model: nn.Module, init_seed: int = 0, options: dict | None = None) -> Prepared:
    """Weight decay toward the pretrained weights (Chelba & Acero 2004; Daumé III 2007; "pre-trained weight decay"
    in Zhang et al. 2021; L2-SP of Li et al. 2018 in decoupled form), as re-assessed by Du & Nguyen (2023).

    After every optimizer step each backbone parameter that standard fine-tuning decays (not biases, not
    LayerNorm) is pulled toward its value theta_0 at preparation time (the pretrained weight):

        theta <- theta - lr_t * strength * (theta - theta_0)

    with lr_t its group's current learning rate, a decoupled update like AdamW's own weight decay; AdamW's decay
    toward zero is switched off for those parameters (their group has weight_decay 0). `strength` defaults to
    the run's `weight_decay` (0.01), the reference's choice. The classifier head, which has no pretrained value,
    is left to standard AdamW decay toward zero (the reference's intent, `exclude_last_group`); the pooler belongs
    to the backbone. The reference applies the pull before the Adam update rather than after: the difference is
    of order lr^2 * strength.
    """
    opts = _options("wd_pre", options, {"strength": None})
    base = _backbone(model)
    backbone_ids = {id(p) for p in base.parameters()}
    prior = {id(p): p.detach().clone() for n, p in base.named_parameters() if not is_no_decay(n)}

    def groups(hp) -> list[dict]:
        strength = hp.weight_decay if opts["strength"] is None else float(opts["strength"])
        named = list(model.named_parameters())
        backbone = [(n, p) for n, p in named if id(p) in backbone_ids]
        head = [(n, p) for n, p in named if id(p) not in backbone_ids]
        pulled = [p for n, p in backbone if not is_no_decay(n)]
        return [g for g in (
            {"params": pulled, "weight_decay": 0.0, "prior_decay": strength},
            {"params": [p for n, p in backbone if is_no_decay(n)], "weight_decay": 0.0},
            *decay_groups(head, hp.weight_decay),
        ) if g["params"]]

    @torch.no_grad()
    def pull(optimizer) -> None:
        for group in optimizer.param_groups:
            strength = group.get("prior_decay")
            if not strength:
                continue
            for p in group["params"]:
                theta0 = prior[id(p)]
                if theta0.device != p.device or theta0.dtype != p.dtype:
                    theta0 = prior[id(p)] = theta0.to(device=p.device, dtype=p.dtype)
                p.sub_(p - theta0, alpha=group["lr"] * strength)

    return Prepared(model, "wd_pre", opts, groups_fn=groups, hook=pull)


# ----------------------------------------------------------------------------------------------------------------

_METHOD_FUNCTIONS = {"standard": standard, "mixout": mixout, "llrd": llrd, "reinit": reinit, "wd_pre": wd_pre}


def validate_method(method: str) -> None:
    """A one-line `SeedlabError` unless `method` is one of `METHODS`."""
    if method not in METHODS:
        raise choice_error("mitigation method", method, METHODS)


def prepare(model: nn.Module, method: str = "standard", init_seed: int = 0, options: dict | None = None) -> Prepared:
    """Apply mitigation `method` (one of `METHODS`) to a freshly resolved classifier, in place.

    Call it after `resolve_model` and before `finetune`; `init_seed` is the trial's head-initialisation seed
    (used by `reinit`). `options` override the method's defaults (see the module docstring).
    """
    validate_method(method)
    return _METHOD_FUNCTIONS[method](model, init_seed, options)


__all__ = ["METHODS", "Prepared", "prepare", "validate_method", "standard", "mixout", "llrd", "reinit", "wd_pre",
           "MixLinear", "mix_weights", "llrd_param_groups", "standard_param_groups", "is_no_decay"]
