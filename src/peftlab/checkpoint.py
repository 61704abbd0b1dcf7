"""Resumable training checkpoints: trainable weights, optimizer state, the best weights so far and
the loop's counters, written at every validation so an interrupted run continues from there.

Everything is stored as safetensors plus JSON: nothing is unpickled when a checkpoint is loaded
(a checkpoint folder may come from someone else's machine). The folder is written beside its
final place and renamed, so a kill during the write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

NAME = "checkpoint"


def _flat_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """AdamW's state dict as named tensors + JSON (its per-parameter state is tensors and numbers)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflat_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save(
    run_dir: Path,
    trainable: dict[str, torch.Tensor],
    optimizer,
    best_state: dict | None,
    info: dict,
    method_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """``method_state``: what a method keeps outside its weights (AdaLoRA's rank allocator), if anything."""
    final = Path(run_dir) / NAME
    tmp = Path(run_dir) / f".{NAME}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()}, tmp / "trainable.safetensors")
    if best_state is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in best_state.items()}, tmp / "best.safetensors")
    if method_state:
        save_file({k: v.detach().cpu().contiguous() for k, v in method_state.items()}, tmp / "method.safetensors")
    opt_tensors, opt_meta = _flat_optimizer(optimizer)
    save_file(opt_tensors, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({**info, "optimizer": opt_meta}), encoding="utf-8")
    old = Path(run_dir) / f".{NAME}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def exists(run_dir: Path) -> bool:
    return (Path(run_dir) / NAME / "state.json").is_file()


def load(run_dir: Path, model_params: dict[str, torch.nn.Parameter], optimizer) -> tuple[dict, dict | None]:
    """Restore weights and optimizer in place; returns (info, best_state or None)."""
    folder = Path(run_dir) / NAME
    info = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    weights = load_file(folder / "trainable.safetensors")
    missing = set(model_params) ^ set(weights)
    if missing:
        raise ValueError(
            f"{folder}: checkpoint does not match the model's trainable parameters ({sorted(missing)[:3]})"
        )
    with torch.no_grad():
        for name, p in model_params.items():
            p.copy_(weights[name].to(p.device, p.dtype))
    device = next(iter(model_params.values())).device
    opt = load_file(folder / "optimizer.safetensors", device=str(device))
    optimizer.load_state_dict(_unflat_optimizer(opt, info.pop("optimizer")))
    best = load_file(folder / "best.safetensors") if (folder / "best.safetensors").is_file() else None
    return info, best


def method_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """The method's own saved state (empty when the method keeps none)."""
    path = Path(run_dir) / NAME / "method.safetensors"
    return load_file(path) if path.is_file() else {}


def remove(run_dir: Path) -> None:
    shutil.rmtree(Path(run_dir) / NAME, ignore_errors=True)
