"""Named tensors on disk: the saved format of methods peft does not have (last layers, parallel
adapters, hybrids). One safetensors file of {parameter name: tensor} plus a JSON description;
loading copies the tensors into a model the method was applied to again, strict on names and shapes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from peftlab.errors import PeftlabError

META = "peftlab_method.json"


def save_tensors(model: nn.Module, names: list[str], folder: Path, weights: str, meta: dict) -> None:
    """The named parameters (safetensors) + a JSON description. Chosen by name, not by requires_grad,
    so a loaded (frozen) model saves the same file again."""
    folder.mkdir(parents=True, exist_ok=True)
    params = dict(model.named_parameters())
    save_file({n: params[n].detach().contiguous().cpu() for n in names}, str(folder / weights))
    (folder / META).write_text(json.dumps(meta, indent=2))


def load_tensors(model: nn.Module, names: list[str], folder: Path, weights: str) -> nn.Module:
    """Copy saved tensors into the named parameters; names and shapes must match exactly. Returns the
    model frozen, for inference (as peft's loader does)."""
    path = folder / weights
    if not path.is_file():
        raise PeftlabError(f"{folder}: no {weights} (not an adapter saved by this method?)")
    saved = load_file(str(path))
    missing, unexpected = sorted(set(names) - set(saved)), sorted(set(saved) - set(names))
    if missing or unexpected:
        raise PeftlabError(
            f"{path}: saved tensors do not match the method applied with these options; "
            f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            if params[name].shape != saved[name].shape:
                raise PeftlabError(
                    f"{path}: {name} has shape {tuple(saved[name].shape)}, expected {tuple(params[name].shape)}"
                )
            params[name].copy_(saved[name])
    return model.requires_grad_(False)
