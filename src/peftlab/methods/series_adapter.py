"""Series (bottleneck) adapters: Houlsby et al., 2019 (Parameter-Efficient Transfer Learning for NLP,
ICML 2019, arXiv:1902.00751) and Pfeiffer et al., 2021 (AdapterFusion: Non-Destructive Task
Composition for Transfer Learning, EACL 2021, arXiv:2005.00247).

A bottleneck Down -> non-linearity -> Up with its own skip connection, inserted *after* a sublayer,
on the sublayer's output and before the block adds it to the residual stream (Houlsby, figure 2):

    h = sublayer(x);   sublayer_out = h + scaling * Up(dropout(f(Down(h))))

``placement`` follows the papers: 'houlsby' puts one adapter after the self-attention block and one
after the feed-forward block of every layer; 'pfeiffer' only after the feed-forward block (their
search found it as good at half the parameters, section 3 / table 6). ``residual: false`` drops the
adapter's own skip (sublayer_out = scaling * Up(...)), an ablation: the model then no longer starts
at the base model. Up starts at zero, so with the skip the model's output is the base model's until
the first update (Houlsby et al.'s "near-identity" initialisation, made exact).

The papers place the adapter after the sublayer's output projection, which on the pre-norm models
peftlab supports (Llama, GPT-Neo, T5) is the sublayer's output before the residual add, where the
forward hook sees it; T5's cross-attention is left alone, as by the parallel adapter.

Saved format ("peftlab format", version 1), in the adapter folder:
    series_adapter.safetensors   every adapter tensor, keyed by its parameter name in the model,
                                 e.g. ``model.layers.0.mlp.series_adapter.up.weight``
    peftlab_method.json          {"method": "series_adapter", "format": 1, "options": {...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from peftlab.methods import bottleneck
from peftlab.methods.base import Hook, Method
from peftlab.methods.tensors import load_tensors, save_tensors

WEIGHTS = "series_adapter.safetensors"
CHILD = "series_adapter"  # the adapter's attribute name on the hooked sublayer
TARGETS = {"houlsby": "both", "pfeiffer": "ffn"}  # placement -> sublayers adapted


class SeriesAdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    placement: Literal["houlsby", "pfeiffer"] = Field(
        "pfeiffer",
        description="'houlsby': after the self-attention and after the feed-forward block of every layer; "
        "'pfeiffer': after the feed-forward block only.",
    )
    reduction_factor: int = Field(
        16, ge=1, description="Bottleneck width = hidden size // reduction_factor (at least 1)."
    )
    non_linearity: bottleneck.NonLinearity = Field(
        "relu", description="Non-linearity between Down and Up: relu, gelu, silu (swish) or tanh."
    )
    residual: bool = Field(True, description="The adapter's own skip connection (h + adapter(h)); false = ablation.")
    scaling: float = Field(1.0, gt=0, description="Scale of the adapter branch (1 in both papers).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the bottleneck activations (0 = off).")


def _adapt_output(module: nn.Module, args: tuple, kwargs: dict, output):
    """Forward hook: the sublayer's output h becomes h + adapter(h) (or adapter(h) without the skip)."""
    states = bottleneck.hidden_states(output)
    adapter = getattr(module, CHILD)
    adapted = adapter(states).to(states.dtype)
    return bottleneck.with_hidden_states(output, states + adapted if adapter.residual else adapted)


def apply(model: nn.Module, cfg: SeriesAdapterConfig) -> nn.Module:
    hidden, width = model.config.hidden_size, bottleneck.width(model, cfg.reduction_factor)

    def make() -> nn.Module:
        adapter = bottleneck.Bottleneck(hidden, width, cfg.scaling, cfg.dropout, cfg.non_linearity)
        adapter.residual = cfg.residual  # a plain attribute: read by the hook, not a tensor to save
        return adapter

    bottleneck.attach(model, TARGETS[cfg.placement], CHILD, make, _adapt_output, METHOD.name)
    model.peftlab_series_adapter = cfg.model_dump()  # read by save() for the JSON
    return model


def save(model: nn.Module, folder: Path) -> None:
    meta = {"method": "series_adapter", "format": 1, "options": model.peftlab_series_adapter}
    save_tensors(model, bottleneck.names_under(model, CHILD), folder, WEIGHTS, meta)


def load(base: nn.Module, folder: Path, cfg: SeriesAdapterConfig) -> nn.Module:
    model = apply(base, cfg)
    return load_tensors(model, bottleneck.names_under(model, CHILD), folder, WEIGHTS)


def label(entry: dict) -> str:
    """'houlsby' or 'pfeiffer' in a comparison, the name the literature uses for each."""
    return str(entry.get("placement") or SeriesAdapterConfig.model_fields["placement"].default)


METHOD = Method(
    name="series_adapter",
    paper="Houlsby et al., 2019. Parameter-Efficient Transfer Learning for NLP. ICML. arXiv:1902.00751; "
    "Pfeiffer et al., 2021. AdapterFusion. EACL. arXiv:2005.00247.",
    config_cls=SeriesAdapterConfig,
    hooks=frozenset({Hook.BLOCK_SERIES}),
    default_lr=1e-3,
    apply=apply,
    save=save,
    load=load,
    zero_init=True,
    added_markers=("series_adapter",),
    label_for=label,
)
