"""LoRA through peft: low-rank adapters on chosen linear layers, the new head trained in full, everything else frozen.

A cell asks for LoRA with a `peft` entry (`LoraSettings.from_cell`): `"lora"` for the defaults, or a dict of
`r`, `alpha`, `dropout`, `target_modules`. `target_modules=None` takes peft's default for the architecture family
(`peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`: query/value for BERT, RoBERTa and
ELECTRA, query_proj/value_proj for DeBERTa-v2/v3, q_proj/v_proj for Llama, Qwen2/3, Mistral and Gemma).

Randomness: the adapter's initialisation (the A matrices; B starts at zero, so the adapted model starts equal to
the base model) is drawn from the global torch RNG right after `torch.manual_seed(lora_seed)`, and nothing else
draws there, so `lora_seed` decides it alone. The head was drawn from `init_seed` before (it is copied, not
redrawn, when peft wraps it). LoRA's dropout draws during training, from the stream `dropout_seed` seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from seedlab.errors import SeedlabError

PEFT_NONE, PEFT_LORA = "none", "lora"


@dataclass(frozen=True)
class LoraSettings:
    """LoRA's settings (Hu et al., 2021). Defaults: rank 8, alpha 16 (the update is scaled by alpha / r = 2),
    dropout 0.1 on the adapter's input, peft's target modules for the architecture."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: tuple[str, ...] | None = None

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise SeedlabError(f"invalid LoRA r {self.r!r} (valid: an integer >= 1, e.g. 8 or 16)")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise SeedlabError(f"invalid LoRA alpha {self.alpha!r} (valid: a number > 0, e.g. 16)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise SeedlabError(f"invalid LoRA dropout {self.dropout!r} (valid: a number in [0, 1))")
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.target_modules is not None:
            modules = (self.target_modules,) if isinstance(self.target_modules, str) else tuple(self.target_modules)
            if not modules or not all(isinstance(m, str) and m for m in modules):
                raise SeedlabError(f"invalid LoRA target_modules {self.target_modules!r} (valid: None for the "
                                   "architecture's default, or module names such as ['q_proj', 'v_proj'])")
            object.__setattr__(self, "target_modules", modules)

    @classmethod
    def from_cell(cls, value) -> "LoraSettings | None":
        """The settings a cell's `peft` entry asks for; None for full fine-tuning (absent, None or "none")."""
        if value is None or value == PEFT_NONE:
            return None
        if value == PEFT_LORA:
            return cls()
        if not isinstance(value, dict) or value.get("method", PEFT_LORA) != PEFT_LORA:
            raise SeedlabError(f"invalid peft {value!r} (valid: 'none', 'lora', or a dict with method 'lora' and "
                               f"any of {', '.join(cls.__dataclass_fields__)})")
        options = {k: v for k, v in value.items() if k != "method"}
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise SeedlabError(f"unknown LoRA option(s) {unknown} (valid: {', '.join(cls.__dataclass_fields__)})")
        return cls(**options)

    def as_cell(self) -> dict:
        """The canonical form that enters the resolved cell (and so the trial key)."""
        out = {"method": PEFT_LORA, **asdict(self)}
        out["target_modules"] = None if self.target_modules is None else list(self.target_modules)
        return out


def apply_lora(model: torch.nn.Module, settings: LoraSettings, lora_seed: int, head_modules=()) -> torch.nn.Module:
    """`model` wrapped by peft with LoRA adapters; only the adapters and `head_modules` (trained in full) require
    gradients.

    Parameters
    ----------
    model : transformers sequence classifier
        The resolved model (`seedlab.train.models.resolve_model`); its base weights are frozen in place.
    settings : LoraSettings
    lora_seed : int
        Seeds the adapter's initialisation, and nothing else.
    head_modules : sequence of str
        Modules trained in full beside the adapters: the new head (`ResolvedModel.new_modules`); peft's
        sequence-classification task adds "classifier" and "score" itself.

    Returns
    -------
    peft.PeftModelForSequenceClassification
    """
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=settings.r, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout,
                        target_modules=None if settings.target_modules is None else list(settings.target_modules),
                        modules_to_save=list(head_modules) or None)
    torch.manual_seed(lora_seed)  # the adapter's A matrices are the only draws from here to the training loop
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # no default target modules for this architecture, or names that match nothing
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SeedlabError(f"cannot apply LoRA to {type(model).__name__} ({model.config.model_type}): {reason} "
                           f"(valid: peft={{'target_modules': [names of its linear layers]}})") from None


def target_modules(model) -> list[str]:
    """The module names a peft model's LoRA adapts (peft's default resolved, or the ones asked for), sorted."""
    found = model.peft_config["default"].target_modules
    return sorted([found] if isinstance(found, str) else found)
