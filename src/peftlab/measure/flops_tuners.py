"""The FLOPs of peft tuner layers, measured once per distinct layer.

flops.py counts every nn.Linear (and Conv1D) call and attention by structure. peft tuner layers do
more than call Linear layers: LoHa and LoKr multiply small factors into a dense delta weight and
apply it with ``F.linear`` (a second full-size matmul per token); FourierFT does the same after an
inverse FFT; VeRA runs ``F.linear`` on slices of shared random matrices; OFT rotates the input; BOFT
builds a rotated weight and never calls its base layer; DoRA multiplies its factors on an identity
matrix once per call to take the adapted weight's norm, and while training with dropout reruns the
base matmul. Some of that work grows with the tokens, some is once per call, whatever the batch.

So each distinct tuner layer (LoRA's included) is run alone under
``torch.utils.flop_counter.FlopCounterMode``, forward then backward, on 1 and on 2 input rows, with
its input requiring grad exactly when it does in the model; the two give a part per row and a part
per call, and flops.py counts the layer with those instead of its Linear sub-layers. peft has no
FLOP accounting of its own to ask instead.

The runs leave the model as they found it: they run in training mode (a training step is what is
counted) with the random number generator put back afterwards, and restore training flags and
gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers.pytorch_utils import Conv1D

MATMUL_LAYERS = (nn.Linear, Conv1D)


@dataclass(frozen=True)
class Extra:
    """FLOPs of one call of a tuner layer: per input row and per call, forward and backward."""

    row_forward: int = 0
    row_backward: int = 0
    call_forward: int = 0
    call_backward: int = 0


def tuner_layers(model: nn.Module) -> list[nn.Module]:
    """peft tuner layers that stand in for a Linear (LoRA, LoHa, VeRA, OFT, ...), in model order."""
    return [
        m
        for m in model.modules()
        if isinstance(m, BaseTunerLayer) and isinstance(getattr(m, "base_layer", None), MATMUL_LAYERS)
    ]


def _in_width(layer: nn.Module) -> int:
    base = layer.base_layer
    return base.in_features if isinstance(base, nn.Linear) else base.weight.shape[0]  # Conv1D: (in, out)


def _run(layer: nn.Module, rows: int, input_requires_grad: bool) -> tuple[int, int]:
    """(forward, backward) FLOPs of one call of the layer on ``rows`` rows."""
    ref = layer.base_layer.weight
    dtype = ref.dtype if ref.is_floating_point() else torch.float32  # a 4-bit base stores uint8 (qlora)
    x = torch.full((1, rows, _in_width(layer)), 0.5, dtype=dtype, device=ref.device)
    x.requires_grad_(input_requires_grad)
    calls, unseen_forward, unseen_backward = _unseen_base_matmuls(layer, x)
    with FlopCounterMode(display=False) as forward:
        out = layer(x)
    matmul = 2 * rows * _in_width(layer) * layer.base_layer.out_features  # one base call, forward
    fwd = forward.get_total_flops() + calls * unseen_forward * matmul
    if not out.requires_grad:
        return fwd, 0
    with FlopCounterMode(display=False) as backward:
        out.float().sum().backward()
    # The frozen base weight gets no gradient; its input does when it requires grad.
    return fwd, backward.get_total_flops() + calls * unseen_backward * input_requires_grad * matmul


def _unseen_base_matmuls(layer: nn.Module, x: torch.Tensor) -> tuple[int, bool, bool]:
    """(calls of the base layer in one forward of the tuner layer, whether FlopCounterMode misses the
    base's forward matmul, and its input-gradient matmul). bitsandbytes' 4-bit matmul (qlora) is not an
    aten op the counter knows, while its backward, a plain matmul with the dequantized weight, is."""
    probe_x = x.detach().clone().requires_grad_(True)
    with FlopCounterMode(display=False) as forward:
        out = layer.base_layer(probe_x)
    with FlopCounterMode(display=False) as backward:
        out.float().sum().backward()
    unseen_forward, unseen_backward = forward.get_total_flops() == 0, backward.get_total_flops() == 0
    if not (unseen_forward or unseen_backward):
        return 0, False, False
    calls: list[bool] = []
    handle = layer.base_layer.register_forward_hook(lambda m, args, out: calls.append(True))
    try:
        with torch.no_grad():
            layer(x)
    finally:
        handle.remove()
    return len(calls), unseen_forward, unseen_backward


def measure(layer: nn.Module, input_requires_grad: bool) -> Extra:
    """The layer's work as a part per row and a part per call (from runs on 1 and 2 rows)."""
    modes = {m: m.training for m in layer.modules()}
    grads = {p: p.grad for p in layer.parameters()}
    device = layer.base_layer.weight.device
    try:
        # Training mode: some layers do more work while training (DoRA with dropout reruns the base
        # matmul on the dropped-out input). Dropout draws random numbers: fork_rng puts the generator
        # back, so training stays reproducible.
        layer.train()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.enable_grad():
            one, two = _run(layer, 1, input_requires_grad), _run(layer, 2, input_requires_grad)
    finally:
        for m, training in modes.items():
            m.training = training
        for p, grad in grads.items():
            p.grad = grad
    per_row = (two[0] - one[0], two[1] - one[1])
    return Extra(per_row[0], per_row[1], one[0] - per_row[0], one[1] - per_row[1])


class Measured:
    """``measure`` once per distinct layer: layers of the same kind, shapes and trainable tensors cost the same."""

    def __init__(self):
        self._cache: dict[tuple, Extra] = {}

    def __call__(self, layer: nn.Module, input_requires_grad: bool) -> Extra:
        key = (
            type(layer),
            tuple(layer.base_layer.weight.shape),
            input_requires_grad,
            tuple((n, tuple(p.shape), p.requires_grad) for n, p in layer.named_parameters()),
        )
        if key not in self._cache:
            self._cache[key] = measure(layer, input_requires_grad)
        return self._cache[key]
