"""UniPELT's gates: each component of a hybrid behind a learned gate (Mao et al., 2022, "UniPELT: A
Unified Framework for Parameter-Efficient Language Model Tuning", ACL, arXiv:2110.07577).

UniPELT combines LoRA, prefix tuning and a bottleneck adapter and lets the model learn, per input,
how much of each to use (paper section 3):

- LoRA: ``h = W x + G_L(x) * scaling * B A x`` with ``G_L(x) = sigmoid(W_L x)``, one gate per LoRA
  layer, computed from that layer's own input;
- bottleneck adapter (series or parallel): ``h = h + G_A(a) * Up(f(Down(a)))`` with
  ``G_A(a) = sigmoid(W_A a)``, ``a`` the adapter's input;
- prefix tuning: the prefix values of layer l scaled by ``G_P = sigmoid(g_l)``.

The prefix gate differs from the paper, where G_P is computed from the layer's input. peft builds
the prefix as a key/value cache before the first layer runs, so a per-token gate on it would need
peftlab's own attention; here it is one learned scalar per layer, which still lets training turn
a layer's prefix down or off. MAM (He et al., 2022) is the same hybrid without gates.

A gate is a child module (``unipelt_gate``) of the module it gates, so parameter names say what
they gate, the hybrid saves them with the rest of its tensors, and each trains at the learning rate
of the component it belongs to. Gates start as the paper's do, at about one half (a Linear at
PyTorch's default init, the prefix logits at zero): LoRA's and the adapter's outputs start at zero
whatever the gate, so the untrained model is the base model as without gates; the prefix's values
start at half the size they have without gates.

peft has no gates (its mixed models cannot even combine prompt learning with LoRA, peft #2307), so
they are implemented here, with forward hooks on peft's LoRA layers and prefix encoder.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.bottleneck import GATE, Bottleneck

CHILD = GATE
GATED = ("lora", "prefix_tuning", "series_adapter", "parallel_adapter")  # the methods with a gate


def check(entries: list[tuple[str, BaseModel]]) -> None:
    """Refuse ``gates: true`` on a hybrid with a component that has no gate."""
    for i, (name, options) in enumerate(entries):
        if name not in GATED:
            raise PeftlabError(
                f"method.methods[{i}].name: '{name}' has no UniPELT gate; with gates: true the components "
                f"must be among {', '.join(GATED)} (or set gates: false)"
            )
        if name == "lora" and getattr(options, "use_dora", False):
            raise PeftlabError(
                f"method.methods[{i}].use_dora: DoRA's layers do not apply lora_B as a separate term to "
                "gate; use plain LoRA with gates: true"
            )


def attach(model: nn.Module, names: list[str]) -> dict[str, str]:
    """Add a gate to every module of the components ``names``; returns {gate parameter name: component}."""
    owner: dict[int, str] = {}
    ref = next(model.parameters())
    for name in names:
        made = {"lora": _gate_lora, "prefix_tuning": _gate_prefix}.get(name, _gate_adapters)(model, ref, name)
        if not made:
            raise PeftlabError(f"method: gates: found nothing of '{name}' to gate in {type(model).__name__}")
        owner.update({id(p): name for m in made for p in m.parameters()})
    return {n: owner[id(p)] for n, p in model.named_parameters() if id(p) in owner}


def _linear_gate(width: int, ref: torch.Tensor) -> nn.Linear:
    return nn.Linear(width, 1).to(device=ref.device, dtype=ref.dtype)


# ---- LoRA --------------------------------------------------------------------------------------
def _keep_input(layer: nn.Module, args: tuple, kwargs: dict) -> None:
    layer._unipelt_x = args[0] if args else kwargs["x"]


def _scale_lora_b(layer: nn.Module):
    def hook(lora_b: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = layer.__dict__.pop("_unipelt_x")
        gate = torch.sigmoid(getattr(layer, CHILD)(x.to(output.dtype)))
        return output * gate

    return hook


def _gate_lora(model: nn.Module, ref: torch.Tensor, _: str) -> list[nn.Module]:
    made = []
    for layer in [m for m in model.modules() if isinstance(getattr(m, "lora_B", None), nn.ModuleDict)]:
        if not layer.lora_B:  # a peft layer of another adapter name: nothing to gate
            continue
        gate = _linear_gate(layer.in_features, ref)
        layer.add_module(CHILD, gate)
        layer.register_forward_pre_hook(_keep_input, with_kwargs=True)
        for lora_b in layer.lora_B.values():
            lora_b.register_forward_hook(_scale_lora_b(layer))
        made.append(gate)
    return made


# ---- bottleneck adapters -----------------------------------------------------------------------
def _gate_adapters(model: nn.Module, ref: torch.Tensor, name: str) -> list[nn.Module]:
    made = []
    for parent in model.modules():
        adapter = getattr(parent, name, None)  # series_adapter / parallel_adapter children (bottleneck.attach)
        if isinstance(adapter, Bottleneck):
            gate = _linear_gate(adapter.down.in_features, ref)
            setattr(adapter, CHILD, gate)
            made.append(gate)
    return made


# ---- prefix tuning -----------------------------------------------------------------------------
class PrefixGate(nn.Module):
    """One logit per layer; scales that layer's prefix values by its sigmoid."""

    def __init__(self, num_layers: int, ref: torch.Tensor):
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(num_layers, device=ref.device, dtype=ref.dtype))

    def scale(self, prefix: torch.Tensor) -> torch.Tensor:
        # peft's row per virtual token: key(layer 0), value(layer 0), key(layer 1), ... each token_dim wide
        batch, tokens, width = prefix.shape
        layers = self.logit.numel()
        kv = prefix.view(batch, tokens, layers, 2, width // (2 * layers))
        factor = torch.stack([torch.ones_like(self.logit), torch.sigmoid(self.logit)], dim=1)  # (layers, 2)
        return (kv * factor[:, :, None].to(kv.dtype)).view(batch, tokens, width)


def _scale_prefix(encoder: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return getattr(encoder, CHILD).scale(output)


def _gate_prefix(model: nn.Module, ref: torch.Tensor, _: str) -> list[nn.Module]:
    encoders = getattr(model, "prompt_encoder", None)
    if not encoders:
        return []
    made = []
    for adapter, encoder in encoders.items():
        pc = model.peft_config[adapter]
        if pc.inference_mode:  # peft then reads the prefix from the embedding, past the encoder and its hook
            raise PeftlabError("method: gates need the prefix encoder to run: the peft config has inference_mode set")
        gate = PrefixGate(pc.num_layers, ref)
        encoder.add_module(CHILD, gate)
        encoder.register_forward_hook(_scale_prefix)
        made.append(gate)
    return made
