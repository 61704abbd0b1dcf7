"""One numerics for every method: ``train.precision`` sets the dtype of training forwards, generation
and log-likelihood scoring alike, explicitly, by one ``torch.autocast`` context per forward.

Why not accelerate's ``mixed_precision``: ``Accelerator.prepare`` rewrites the prepared model's
forward with autocast, so plain models (full, last layers, parallel adapters) then generated and
scored in bf16, peft models generated through their inner, unprepared forward in fp32, and the
zero-shot baseline, never prepared, ran everything in fp32. A comparison must not depend on which
wrapper a method happens to use. Weights stay fp32 (the optimizer's master copy); only the
matmuls run in the compute dtype.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def compute_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``; None means the weights' own dtype.

    auto: bf16 on a GPU, fp32 on CPU (bf16 on CPU is only fast with AMX/AVX512-BF16 kernels; it is a
    choice the user makes with ``bf16``, measured in bench/RESULTS.md)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device_type = torch.device(device).type
    if precision == "bf16" or (precision == "auto" and device_type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """The context every forward pass of a run runs in (a no-op for fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
