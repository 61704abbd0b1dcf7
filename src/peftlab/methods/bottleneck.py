"""The bottleneck adapter module and where adapters attach: shared by the parallel adapter (beside a
sublayer) and the series adapters (after one).

peft has no bottleneck adapters (peft issue #244), so they are implemented here. An adapter is a
child module of the sublayer it adapts (``<sublayer>.<child>``), run by a forward hook on that
sublayer, so every base parameter name stays unchanged and the saved tensors are keyed by their
names in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.models import arch

NonLinearity = Literal["relu", "gelu", "silu", "tanh"]
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,  # "swish", AdapterHub's default for Houlsby adapters
    "tanh": torch.tanh,
}
# Child names of the sublayers (models/arch.py): T5's cross-attention `EncDecAttention` is not matched.
SUBLAYERS = {"ffn": arch.FFN, "attention": arch.SELF_ATTENTION, "both": arch.FFN + arch.SELF_ATTENTION}


GATE = "unipelt_gate"  # the optional gate's child name (methods/gates.py)


class Bottleneck(nn.Module):
    """Down (hidden -> width) -> non-linearity -> dropout -> Up (width -> hidden), times scaling,
    times sigmoid(gate(x)) when a UniPELT gate was added (methods/gates.py).

    Up starts at zero, so the adapter's output is zero and the model is the base model until the
    first update (Houlsby et al. start near zero for the same reason: a near-identity adapter)."""

    def __init__(self, hidden: int, width: int, scaling: float, dropout: float, non_linearity: str = "relu"):
        super().__init__()
        self.down = nn.Linear(hidden, width)  # PyTorch's default (Kaiming-uniform) init
        self.up = nn.Linear(width, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.dropout = nn.Dropout(dropout)
        self.scaling = scaling
        self.non_linearity = non_linearity
        self.register_module(GATE, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.scaling * self.up(self.dropout(ACTIVATIONS[self.non_linearity](self.down(x))))
        gate = getattr(self, GATE)
        return out if gate is None else out * torch.sigmoid(gate(x))


def width(model: nn.Module, reduction_factor: int) -> int:
    """Bottleneck width: hidden size // reduction_factor, at least 1."""
    return max(1, model.config.hidden_size // reduction_factor)  # T5's config maps hidden_size to d_model


def find_sublayers(model: nn.Module, target: str, method: str) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every sublayer to adapt, in model order."""
    names = SUBLAYERS[target]
    found = []
    for parent_name, parent in model.named_modules():
        for child in names:
            module = getattr(parent, child, None)
            if isinstance(module, nn.Module):
                found.append((f"{parent_name}.{child}".lstrip("."), module))
    if not found:
        raise PeftlabError(
            f"method {method}: found no {target} sublayer in {type(model).__name__}; "
            f"supported: sublayers named {', '.join(names)} (Llama, GPT-Neo, T5 families)"
        )
    return found


def attach(
    model: nn.Module, target: str, child: str, make: Callable[[], nn.Module], hook: Callable, method: str
) -> nn.Module:
    """Freeze the model, add ``make()`` as ``<sublayer>.<child>`` to every ``target`` sublayer (on the
    model's device and dtype) and register ``hook`` (a forward hook with kwargs) on the sublayer."""
    model.requires_grad_(False)
    ref = next(model.parameters())
    for name, sublayer in find_sublayers(model, target, method):
        if hasattr(sublayer, child):
            raise PeftlabError(f"method {method}: {name} already has a {child}")
        sublayer.add_module(child, make().to(device=ref.device, dtype=ref.dtype))
        sublayer.register_forward_hook(hook, with_kwargs=True)
    return model


def names_under(model: nn.Module, child: str) -> list[str]:
    """The parameter names of every ``child`` module the method added."""
    return [n for n, _ in model.named_parameters() if f".{child}." in n]


def hidden_states(output) -> torch.Tensor:
    """A sublayer's hidden states: attention returns a tuple (states, weights, position bias ...)."""
    return output[0] if isinstance(output, tuple) else output


def with_hidden_states(output, states: torch.Tensor):
    """``output`` with its hidden states replaced, the rest of an attention tuple passed through."""
    return (states, *output[1:]) if isinstance(output, tuple) else states
