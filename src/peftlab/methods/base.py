"""What a fine-tuning method is: a config class, where it hooks in, and four functions.

Composition over inheritance: a method is a record of plain functions, not a subclass.
The hook point is declared so that hybrids can refuse combinations that touch the same place
(e.g. two methods both wrapping the same Linear layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

from pydantic import BaseModel
from torch import nn


class Hook(str, Enum):
    NONE = "none"                            # zero-shot: nothing trains
    PARAMETER_SUBSET = "parameter_subset"    # full fine-tuning, last layers
    LAYER_WRAP = "layer_wrap"                # LoRA, IA3, parallel adapters
    INPUT_EMBEDDINGS = "input_embeddings"    # soft prompt tuning
    ATTENTION_KV = "attention_kv"            # prefix tuning


@dataclass(frozen=True)
class Method:
    name: str
    paper: str                                   # citation shown by `peftlab methods`
    config_cls: type[BaseModel]
    hooks: frozenset[Hook]
    default_lr: float
    # apply(model, options) -> model whose only trainable parameters are the method's
    apply: Callable[[nn.Module, BaseModel], nn.Module]
    # save(model, folder): safetensors + a JSON config
    save: Callable[[nn.Module, Path], None]
    # load(fresh_base_model, folder, options) -> model with the saved method applied
    load: Callable[[nn.Module, Path, BaseModel], nn.Module]
    trains: bool = True


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total), counting each shared (tied) tensor once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
