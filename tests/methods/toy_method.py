"""A toy method that exists only in the tests: it shows what adding a method takes. This file and
one ``register`` call (in tests/conftest.py) are all; every test that runs over the registry
(tests/methods/test_every_method.py, tests/models/test_decode.py) then checks it too.

norm_scale: a learned scale on every normalisation layer's weight (like LN tuning, Zhao et al., 2023,
"Tuning LayerNorm in Attention", arXiv:2312.11420, with the weight itself kept frozen): one vector
per norm, initialised to 1, so the untrained model is the base model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from peftlab.methods.base import Hook, Method
from peftlab.methods.tensors import load_tensors, save_tensors

WEIGHTS = "norm_scale.safetensors"


class NormScaleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NormScale(nn.Module):
    """Wraps a norm layer: its output times a learned per-channel scale."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm
        self.norm_scale = nn.Parameter(torch.ones_like(norm.weight))

    def forward(self, x):
        return self.norm(x) * self.norm_scale


def _is_norm(name: str, module: nn.Module) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return isinstance(getattr(module, "weight", None), nn.Parameter) and ("norm" in leaf or leaf.startswith("ln_"))


def apply(model: nn.Module, cfg: NormScaleConfig) -> nn.Module:
    model.requires_grad_(False)
    targets = [(name, m) for name, m in model.named_modules() if name and _is_norm(name, m)]
    for name, module in targets:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, NormScale(module))
    return model


def _names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.endswith("norm_scale")]


def save(model: nn.Module, folder: Path) -> None:
    save_tensors(model, _names(model), folder, WEIGHTS, {"method": "norm_scale", "format": 1})


def load(base: nn.Module, folder: Path, cfg: NormScaleConfig) -> nn.Module:
    model = apply(base, cfg)
    return load_tensors(model, _names(model), folder, WEIGHTS)


METHOD = Method(
    name="norm_scale",
    paper="Test-only toy method (after Zhao et al., 2023, arXiv:2312.11420).",
    config_cls=NormScaleConfig,
    hooks=frozenset({Hook.BLOCK_PARALLEL}),  # a module at each norm; hooks matter only inside hybrids
    default_lr=1e-2,
    apply=apply,
    save=save,
    load=load,
    added_markers=("norm_scale",),
)
