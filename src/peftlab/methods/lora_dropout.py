"""LoRA's dropout without a dropped copy of the input per adapted projection.

LoRA (Hu et al., 2021, arXiv:2106.09685) adds ``lora_B(lora_A(dropout(x))) * scaling`` to a frozen
projection. peft's ``lora.Linear`` runs that as three modules, so autograd keeps, for every adapted
projection, dropout's noise (on CPU a float tensor of x's size; on CUDA a bool mask) and the dropped
copy of x that lora_A's weight gradient needs. q, k and v read the same x, yet each keeps its own
copies: about 1.5 GB of a SmolLM2 LoRA step (bench/RESULTS.md). peft (0.21) has no fused or
recomputing dropout for LoRA, hence this module.

``DropoutLinear`` runs dropout and lora_A as one autograd node that saves only x (the very tensor
the base layer received, so q/k/v share it) and the random-number generator's state from just
before the dropout. Backward restores that state and re-runs exactly the forward's dropout and
matmul (the same kernels, the same random draw), then differentiates them: the mask, the output and
both gradients are the unfused path's to the bit. The price is one dropout and one rank-r matmul per
projection redone in backward.

``fuse_lora_dropout(model)`` installs it in every plain peft LoRA Linear with dropout > 0. The saved
adapter is unchanged (lora_A keeps its attribute path and its weight, the peft config keeps
lora_dropout), so ``peft.PeftModel.from_pretrained`` loads it as usual. Left on peft's own path:
DoRA (its variant also feeds the dropped x to the base layer), biased lora_A, and any LoRA layer type
other than ``peft.tuners.lora.layer.Linear`` (embeddings, convolutions, quantized layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

# A keep mask from 16-bit random integers: p is rounded to a multiple of 1/65536.
_LEVELS = 65536


def keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """A Bernoulli(1 - p) keep mask of ``x``'s shape drawn as 16-bit integers, four to each 64-bit
    random draw. On CPU torch's ``bernoulli_`` (what ``F.dropout`` draws with) makes one generator call
    per element: 13 ms for a (8, 488, 576) input on 2 cores against 2 ms for this
    (bench/RESULTS.md), and LoRA draws one mask per adapted projection per step."""
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    dropped = round(p * _LEVELS)  # values below -32768 + dropped are dropped
    return words.view(torch.int16)[:n].view(x.shape) >= dropped - _LEVELS // 2


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout with ``keep_mask``: kept values scaled by 1 / (1 - p), p as the mask rounds it."""
    kept = 1.0 - round(p * _LEVELS) / _LEVELS
    return x * keep_mask(x, p) * (1.0 / kept)


class FastDropout(nn.Module):
    """nn.Dropout drawing its mask with ``keep_mask`` (LoRA's ``fast_dropout`` option)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p) if self.training and self.p > 0 else x


def _dropout(x: torch.Tensor, p: float, fast: bool) -> torch.Tensor:
    return fast_dropout(x, p) if fast else F.dropout(x, p, training=True)


def _rng_state(device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


class _DropoutLinearFn(torch.autograd.Function):
    """y = linear(dropout(x, p), weight), saving x and the RNG state instead of the dropped x."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, p: float, fast: bool) -> torch.Tensor:
        ctx.p, ctx.fast = p, fast
        ctx.rng = _rng_state(x.device)
        # The forward runs under the caller's autocast (Function.apply does not leave it), so the
        # matmul is cast exactly as nn.Linear would be; backward must re-enter the same state.
        ctx.autocast = _autocast_state(x.device.type)
        ctx.save_for_backward(x, weight)
        return F.linear(_dropout(x, p, fast), weight)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        xd = x.detach().requires_grad_(need_x)
        wd = weight.detach().requires_grad_(need_w)
        devices = [x.device] if x.device.type == "cuda" else []
        enabled, dtype = ctx.autocast
        # fork_rng restores the training RNG afterwards: the replayed draw must not shift later ones.
        with torch.random.fork_rng(devices=devices, device_type=x.device.type), torch.enable_grad():
            if x.device.type == "cuda":
                torch.cuda.set_rng_state(ctx.rng, x.device)
            else:
                torch.set_rng_state(ctx.rng)
            with torch.autocast(x.device.type, dtype=dtype, enabled=enabled):
                y = F.linear(_dropout(xd, ctx.p, ctx.fast), wd)
        inputs = [t for t, need in ((xd, need_x), (wd, need_w)) if need]
        grads = iter(torch.autograd.grad(y, inputs, grad_out)) if inputs else iter(())
        gx = next(grads) if need_x else None
        gw = next(grads) if need_w else None
        return gx, gw, None, None


class DropoutLinear(nn.Linear):
    """lora_A with its dropout folded in (see the module docstring). Only the class changes, never the
    parameters or their names, so state dicts and peft's merge see a plain Linear."""

    dropout_p: float = 0.0
    fast: bool = False  # the mask from keep_mask instead of F.dropout's bernoulli_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropout_p == 0.0:  # eval: dropout is the identity anyway
            return F.linear(x, self.weight)
        return _DropoutLinearFn.apply(x, self.weight, self.dropout_p, self.fast)


def _fusable(layer: PeftLoraLinear, adapter: str) -> bool:
    dropout = layer.lora_dropout[adapter]
    lora_a = layer.lora_A[adapter]
    return (
        isinstance(dropout, nn.Dropout)
        and dropout.p > 0
        and not layer.use_dora.get(adapter, False)
        and type(lora_a) is nn.Linear
        and lora_a.bias is None
    )


def fuse_lora_dropout(model: nn.Module, fast: bool = False) -> int:
    """Fold each eligible LoRA dropout into its lora_A (in place); returns how many were folded. ``fast``:
    masks drawn by ``keep_mask``."""
    fused = 0
    for module in model.modules():
        if type(module) is not PeftLoraLinear:  # subclasses (quantized layers) have other forwards
            continue
        for adapter in list(module.lora_A.keys()):
            if not _fusable(module, adapter):
                continue
            lora_a = module.lora_A[adapter]
            p = module.lora_dropout[adapter].p
            lora_a.__class__ = DropoutLinear  # same object, same parameters: names and state dicts unchanged
            lora_a.dropout_p, lora_a.fast = p, fast
            module.lora_dropout[adapter] = nn.Identity()
            fused += 1
    return fused


def fast_lora_dropout(model: nn.Module) -> int:
    """Swap each LoRA dropout (an nn.Dropout with p > 0) for a FastDropout of the same p, in place;
    returns how many were swapped."""
    swapped = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, nn.ModuleDict):
            continue
        for adapter, drop in drops.items():
            if type(drop) is nn.Dropout and drop.p > 0:
                drops[adapter] = FastDropout(drop.p)
                swapped += 1
    return swapped
