"""Full fine-tuning: every parameter of the model is trained (Howard & Ruder, 2018, ULMFiT;
the standard baseline every PEFT paper compares against).

Saved as one safetensors file through ``safetensors.torch.save_model``, which stores tied
tensors (SmolLM2's shared input/output embedding) once and restores the tie on load.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_model, save_model
from torch import nn

from peftlab.methods.base import Hook, Method
from peftlab.methods.tensors import META
from peftlab.rundir.runio import write_json

WEIGHTS = "model.safetensors"


class FullConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


def apply(model: nn.Module, cfg: FullConfig) -> nn.Module:
    model.requires_grad_(True)
    return model


def save(model: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / WEIGHTS))
    write_json(folder / META, {"method": "full"})  # atomic: a crash never leaves half of it


def load(base: nn.Module, folder: Path, cfg: FullConfig) -> nn.Module:
    load_model(base, str(folder / WEIGHTS), strict=True)
    return apply(base, cfg).requires_grad_(False)


METHOD = Method(
    name="full",
    paper="Full fine-tuning of all parameters (the baseline of Hu et al., 2021, and Houlsby et al., 2019).",
    config_cls=FullConfig,
    hooks=frozenset({Hook.PARAMETER_SUBSET}),
    default_lr=5e-5,
    apply=apply,
    save=save,
    load=load,
)
