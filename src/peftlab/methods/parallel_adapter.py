"""Parallel adapter (He et al., 2022. Towards a Unified View of Parameter-Efficient Transfer
Learning. ICLR 2022, arXiv:2110.04366).

A bottleneck Down -> ReLU -> Up placed beside a sublayer rather than after it (paper section 3,
figure 3c; "scaled PA" with scaling s = 4 is their best adapter variant, table 4):

    sublayer_out = sublayer(x) + scaling * Up(dropout(ReLU(Down(x))))

x being the sublayer's own input (after the pre-norm, where the model has one). ``target`` picks the
sublayer: the feed-forward block ('ffn', the paper's recommended place), the self-attention block
('attention'; cross-attention of T5's decoder is left alone), or both. Up starts at zero, so the
model's output is the base model's until the first update.

peft has no bottleneck or parallel adapters (peft issue #244), so this is implemented here: each
adapter is a child module ``<sublayer>.parallel_adapter`` run by a forward hook on the sublayer,
which leaves every base parameter name unchanged.

Saved format ("peftlab format", version 1), in the adapter folder:
    parallel_adapter.safetensors  every adapter tensor, keyed by its parameter name in the model,
                                  e.g. ``model.layers.0.mlp.parallel_adapter.up.weight``
    peftlab_method.json           {"method": "parallel_adapter", "format": 1, "options": {...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.base import Hook, Method
from peftlab.methods.tensors import load_tensors, save_tensors
from peftlab.models import arch

WEIGHTS = "parallel_adapter.safetensors"
CHILD = "parallel_adapter"  # the adapter's attribute name on the hooked sublayer
# Child names of the sublayers (models/arch.py): T5's cross-attention `EncDecAttention` is not matched.
FFN_NAMES, ATTENTION_NAMES = arch.FFN, arch.SELF_ATTENTION


class ParallelAdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reduction_factor: int = Field(
        16, ge=1, description="Bottleneck width = hidden size // reduction_factor (at least 1)."
    )
    scaling: float = Field(4.0, gt=0, description="Scale s of the adapter output (4 = the paper's 'scaled PA').")
    target: Literal["ffn", "attention", "both"] = Field(
        "ffn", description="Sublayer the adapter runs beside: feed-forward block, self-attention, or both."
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the bottleneck activations (0 = off).")


class ParallelAdapter(nn.Module):
    """Down (hidden -> bottleneck) -> ReLU -> dropout -> Up (bottleneck -> hidden), times scaling."""

    def __init__(self, hidden: int, bottleneck: int, scaling: float, dropout: float):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)  # PyTorch's default (Kaiming-uniform) init
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.zeros_(self.up.weight)  # zero output at start: training begins from the base model
        nn.init.zeros_(self.up.bias)
        self.dropout = nn.Dropout(dropout)
        self.scaling = scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * self.up(self.dropout(torch.relu(self.down(x))))


def _add_adapter_output(module: nn.Module, args: tuple, kwargs: dict, output):
    """Forward hook: sublayer output + adapter(sublayer input). Attention returns a tuple whose
    first element is the hidden states; the rest (weights, position bias) pass through."""
    x = args[0] if args else kwargs["hidden_states"]
    adapter = getattr(module, CHILD)
    if isinstance(output, tuple):
        return (output[0] + adapter(x).to(output[0].dtype), *output[1:])
    return output + adapter(x).to(output.dtype)


def find_sublayers(model: nn.Module, target: str) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every sublayer to adapt, in model order."""
    names = {"ffn": FFN_NAMES, "attention": ATTENTION_NAMES, "both": FFN_NAMES + ATTENTION_NAMES}[target]
    found = []
    for parent_name, parent in model.named_modules():
        for child in names:
            module = getattr(parent, child, None)
            if isinstance(module, nn.Module):
                found.append((f"{parent_name}.{child}".lstrip("."), module))
    if not found:
        raise PeftlabError(
            f"method parallel_adapter: found no {target} sublayer in {type(model).__name__}; "
            f"supported: sublayers named {', '.join(names)} (Llama, GPT-Neo, T5 families)"
        )
    return found


def bottleneck(model: nn.Module, cfg: ParallelAdapterConfig) -> int:
    return max(1, model.config.hidden_size // cfg.reduction_factor)


def apply(model: nn.Module, cfg: ParallelAdapterConfig) -> nn.Module:
    model.requires_grad_(False)
    hidden = model.config.hidden_size  # T5's config maps hidden_size to d_model
    ref = next(model.parameters())
    for name, sublayer in find_sublayers(model, cfg.target):
        if hasattr(sublayer, CHILD):
            raise PeftlabError(f"method parallel_adapter: {name} already has a parallel adapter")
        adapter = ParallelAdapter(hidden, bottleneck(model, cfg), cfg.scaling, cfg.dropout)
        sublayer.add_module(CHILD, adapter.to(device=ref.device, dtype=ref.dtype))
        sublayer.register_forward_hook(_add_adapter_output, with_kwargs=True)
    model.peftlab_parallel_adapter = cfg.model_dump()  # read by save() for the JSON
    return model


def adapter_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if f".{CHILD}." in n]


def save(model: nn.Module, folder: Path) -> None:
    meta = {"method": "parallel_adapter", "format": 1, "options": model.peftlab_parallel_adapter}
    save_tensors(model, adapter_names(model), folder, WEIGHTS, meta)


def load(base: nn.Module, folder: Path, cfg: ParallelAdapterConfig) -> nn.Module:
    model = apply(base, cfg)
    return load_tensors(model, adapter_names(model), folder, WEIGHTS)


METHOD = Method(
    name="parallel_adapter",
    paper="He et al., 2022. Towards a Unified View of Parameter-Efficient Transfer Learning. ICLR. arXiv:2110.04366.",
    config_cls=ParallelAdapterConfig,
    hooks=frozenset({Hook.BLOCK_PARALLEL}),
    default_lr=1e-3,
    apply=apply,
    save=save,
    load=load,
    zero_init=True,
    added_markers=("parallel_adapter",),
)
