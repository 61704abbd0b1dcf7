"""Parallel adapter (He et al., 2022. Towards a Unified View of Parameter-Efficient Transfer
Learning. ICLR 2022, arXiv:2110.04366).

A bottleneck Down -> ReLU -> Up placed beside a sublayer rather than after it (paper section 3,
figure 3c; "scaled PA" with scaling s = 4 is their best adapter variant, table 4):

    sublayer_out = sublayer(x) + scaling * Up(dropout(ReLU(Down(x))))

x being the sublayer's own input (after the pre-norm, where the model has one). ``target`` picks the
sublayer: the feed-forward block ('ffn', the paper's recommended place), the self-attention block
('attention'; cross-attention of T5's decoder is left alone), or both. Up starts at zero, so the
model's output is the base model's until the first update.

peft has no bottleneck or parallel adapters (peft issue #244), so this is implemented here
(methods/bottleneck.py): each adapter is a child module ``<sublayer>.parallel_adapter`` run by a
forward hook on the sublayer, which leaves every base parameter name unchanged.

Saved format ("peftlab format", version 1), in the adapter folder:
    parallel_adapter.safetensors  every adapter tensor, keyed by its parameter name in the model,
                                  e.g. ``model.layers.0.mlp.parallel_adapter.up.weight``
    peftlab_method.json           {"method": "parallel_adapter", "format": 1, "options": {...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from peftlab.methods import bottleneck
from peftlab.methods.base import Hook, Method
from peftlab.methods.tensors import load_tensors, save_tensors

WEIGHTS = "parallel_adapter.safetensors"
CHILD = "parallel_adapter"  # the adapter's attribute name on the hooked sublayer


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


def _add_adapter_output(module: nn.Module, args: tuple, kwargs: dict, output):
    """Forward hook: sublayer output + adapter(sublayer input)."""
    x = args[0] if args else kwargs["hidden_states"]
    states = bottleneck.hidden_states(output)
    return bottleneck.with_hidden_states(output, states + getattr(module, CHILD)(x).to(states.dtype))


def apply(model: nn.Module, cfg: ParallelAdapterConfig) -> nn.Module:
    hidden, width = model.config.hidden_size, bottleneck.width(model, cfg.reduction_factor)

    def make() -> nn.Module:
        return bottleneck.Bottleneck(hidden, width, cfg.scaling, cfg.dropout, "relu")

    bottleneck.attach(model, cfg.target, CHILD, make, _add_adapter_output, METHOD.name)
    model.peftlab_parallel_adapter = cfg.model_dump()  # read by save() for the JSON
    return model


def save(model: nn.Module, folder: Path) -> None:
    meta = {"method": "parallel_adapter", "format": 1, "options": model.peftlab_parallel_adapter}
    save_tensors(model, bottleneck.names_under(model, CHILD), folder, WEIGHTS, meta)


def load(base: nn.Module, folder: Path, cfg: ParallelAdapterConfig) -> nn.Module:
    model = apply(base, cfg)
    return load_tensors(model, bottleneck.names_under(model, CHILD), folder, WEIGHTS)


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
