"""LoRA's update added inside one GEMM in training: ``addmm(base(x), h, lora_B^T, alpha=scaling)``.

LoRA (Hu et al., 2021, arXiv:2106.09685) adds ``lora_B(h) * scaling`` to the frozen projection's output,
``h = lora_A(dropout(x))`` of rank r. peft's ``lora.Linear`` runs that as three operations over an
output-sized tensor: the rank-r matmul writes ``h @ lora_B^T``, a multiplication scales it, an addition
adds it to the base output; backward scales the output-sized gradient once more. The matmul has an
inner dimension of r = 16, so all four are bound by memory, not arithmetic: for SmolLM2's MLP
projections (1,536 wide) they took longer than the frozen matmul itself on a 2-core CPU in fp32
(bench/RESULTS.md). ``torch.addmm`` does the same in the GEMM's own store (``C + alpha * A @ B``),
and its backward scales only the rank-r gradients. peft (0.21) has no such path.

Only training takes it. Evaluation and generation run peft's own forward, so a run's predictions and
a reloaded adapter's (``peft.PeftModel.from_pretrained``) are computed alike. The arithmetic is
``C + (scaling x the product)`` in one store instead of three roundings: with a power-of-two scaling (the
default alpha = 2 x rank gives 2) the product's scaling is exact and on the CPUs measured the losses
were the same to the bit; otherwise they differ in rounding only (tests/methods/test_lora_fused_add.py).

``fuse_lora_add(model)`` changes the class of every plain peft LoRA Linear (never its parameters or
their names, so state dicts, merging and saving see peft's layer); the fused path is taken only where
it computes exactly what peft's does: one active vanilla LoRA adapter, not merged, a plain nn.Linear
base, a lora_B without bias or hooks (a hybrid's gate scales lora_B's output by a hook: methods/gates.py),
no autocast, one dtype throughout. Everything else goes to peft's forward.
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn


class FusedAddLinear(PeftLoraLinear):
    """peft's lora.Linear whose training forward adds the update with ``torch.addmm`` (module docstring)."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapter = self._fusable_adapter(x, args, kwargs)
        if adapter is None:
            return super().forward(x, *args, **kwargs)
        lora_a, lora_b = self.lora_A[adapter], self.lora_B[adapter]
        # peft's order: autograd then sums the gradients reaching x (q, k and v share it) in peft's order
        result = self.base_layer(x)
        h = lora_a(self.lora_dropout[adapter](x))
        out = torch.addmm(
            result.reshape(-1, result.shape[-1]),
            h.reshape(-1, h.shape[-1]),
            lora_b.weight.t(),
            alpha=self.scaling[adapter],
        )
        return out.view(result.shape)

    def _fusable_adapter(self, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
        """The one adapter the fused path computes exactly as peft would, or None (peft's forward)."""
        if not self.training or args or kwargs or self.disable_adapters or self.merged:
            return None
        active = [a for a in self.active_adapters if a in self.lora_A]
        if len(active) != 1 or active[0] in self.lora_variant:
            return None
        adapter = active[0]
        lora_a, lora_b, base = self.lora_A[adapter], self.lora_B[adapter], self.base_layer
        if type(base) is not nn.Linear or lora_b.bias is not None or torch.is_autocast_enabled(x.device.type):
            return None
        if lora_b._forward_hooks or lora_b._forward_pre_hooks:  # UniPELT's gate scales lora_B's output (gates.py)
            return None
        dtypes = {x.dtype, base.weight.dtype, lora_a.weight.dtype, lora_b.weight.dtype}
        return adapter if len(dtypes) == 1 else None


def fuse_lora_add(model: nn.Module) -> int:
    """Give every plain peft LoRA Linear the fused training forward (in place); returns how many."""
    fused = 0
    for module in model.modules():
        if type(module) is PeftLoraLinear:  # subclasses (quantized layers) have other forwards
            module.__class__ = FusedAddLinear
            fused += 1
    return fused
