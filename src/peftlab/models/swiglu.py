"""The SwiGLU MLP (Shazeer, 2020, "GLU Variants Improve Transformer", arXiv:2002.05202) of Llama-family
models, ``down_proj(silu(gate_proj(x)) * up_proj(x))``, with a backward that keeps two tensors instead of
three.

Autograd keeps ``gate`` for silu's backward and then ``silu(gate)`` and ``up`` for the product's: three
(tokens x intermediate_size) tensors per layer, the largest activations of the model (on SmolLM2-135M,
batch 8 x 488 in fp32: 0.72 GB each over 30 layers). ``SwiGLU`` keeps ``gate`` and ``up`` and recomputes
``silu(gate)`` in backward, the same elementwise op on the same input, so forward and backward give
the same bits as transformers' module (tests/models/test_swiglu.py) for a third less MLP memory and
one extra silu per layer. torch has no fused SwiGLU op on CPU to call instead.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

# MLP classes whose forward is exactly down_proj(act_fn(gate_proj(x)) * up_proj(x)) (transformers marks
# the others "Copied from LlamaMLP"); any other class is left alone.
SWIGLU_MLPS = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP", "SmolLM3MLP"})


class SwiGLU(torch.autograd.Function):
    """silu(gate) * up, saving gate and up only."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gate, up = ctx.saved_tensors
        # The ops autograd runs for silu then mul, in its order: the product's two grads, then silu's.
        grad_up = grad * F.silu(gate) if ctx.needs_input_grad[1] else None
        grad_gate = None
        if ctx.needs_input_grad[0]:
            grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad_up


def _forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(SwiGLU.apply(self.gate_proj(x), self.up_proj(x)))


def is_swiglu(module: nn.Module) -> bool:
    act = getattr(module, "act_fn", None)
    silu = isinstance(act, nn.SiLU) or type(act).__name__ == "SiLUActivation"
    return type(module).__name__ in SWIGLU_MLPS and silu


def lean_swiglu(model: nn.Module) -> int:
    """Give every SwiGLU MLP of ``model`` the two-tensor backward; returns how many. The module's
    weights, names and state dict are untouched (only its forward, per instance), so saving, peft's
    wrapping of gate/up/down_proj and loading work as before."""
    mlps = [m for m in model.modules() if is_swiglu(m)]
    for m in mlps:
        m.forward = types.MethodType(_forward, m)
    return len(mlps)
