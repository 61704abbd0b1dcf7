"""Shared plumbing for methods that peft implements (LoRA, IA3, prompt and prefix tuning).

peft's own folder format is kept, so a saved adapter loads with ``peft.PeftModel.from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel, get_peft_model
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.models.kind import kind_of


def task_type(model: nn.Module) -> str:
    """peft's task type for the model's kind (CAUSAL_LM or SEQ_2_SEQ_LM)."""
    return kind_of(model).peft_task_type


def make_apply(peft_config):
    """apply(model, options) for a peft method: wrap, freeze the base, train the method's parameters."""

    def apply(model: nn.Module, cfg) -> nn.Module:
        try:
            return get_peft_model(model, peft_config(model, cfg))
        except ValueError as e:  # e.g. target_modules that match no layer of this model
            raise PeftlabError(f"method options do not fit this model: {e}") from None

    return apply


def save(model: nn.Module, folder: Path) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)


def load(base: nn.Module, folder: Path, cfg) -> nn.Module:
    return PeftModel.from_pretrained(base, str(folder), is_trainable=False)
