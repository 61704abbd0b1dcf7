"""Zero-shot baseline: the base model as it is, nothing trained.

A first-class method so that "no fine-tuning" sits in the same leaderboard, with the same
prompt and the same scoring as every trained method.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict
from torch import nn

from peftlab.methods.base import Hook, Method
from peftlab.methods.tensors import META
from peftlab.rundir.runio import write_json


class NoneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


def apply(model: nn.Module, cfg: NoneConfig) -> nn.Module:
    model.requires_grad_(False)
    return model


def save(model: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / META, {"method": "none"})  # atomic: a crash never leaves half of it


def load(base: nn.Module, folder: Path, cfg: NoneConfig) -> nn.Module:
    return apply(base, cfg)


METHOD = Method(
    name="none",
    paper="Zero-shot baseline (no fine-tuning).",
    config_cls=NoneConfig,
    hooks=frozenset({Hook.NONE}),
    default_lr=0.0,
    apply=apply,
    save=save,
    load=load,
    trains=False,
)
