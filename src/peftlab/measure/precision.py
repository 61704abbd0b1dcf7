"""One numerics for every method: ``train.precision`` sets the dtype of training forwards, generation
and log-likelihood scoring alike, explicitly, by one ``torch.autocast`` context per forward.

Why not accelerate's ``mixed_precision``: ``Accelerator.prepare`` rewrites the prepared model's
forward with autocast, so plain models (full, last layers, parallel adapters) then generated and
scored in bf16, peft models generated through their inner, unprepared forward in fp32, and the
zero-shot baseline, never prepared, ran everything in fp32. A comparison must not depend on which
wrapper a method happens to use. Weights stay fp32 (the optimizer's master copy); only the
matmuls run in the compute dtype.

``auto`` is bf16 wherever bf16 matmuls have hardware: every GPU, and CPUs with native bf16
instructions (AVX512-BF16, AMX). On those CPUs bf16 trained 1.41x and generated 1.16x faster than
fp32 with the same quality; on CPUs without them (AVX2 only) it was 23x slower (bench/RESULTS.md), so
the CPU is asked, never guessed from its vendor or from AVX-512 alone.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch

from peftlab.errors import PeftlabError

PRECISIONS = ("auto", "fp32", "bf16")
# "1" or "0" overrides the CPU detection: a cluster of mixed CPUs can pin one numerics for every node
# (or set train.precision explicitly), and the test suite pins fp32 to run the same numerics everywhere.
ENV_CPU_BF16 = "PEFTLAB_CPU_BF16"
_FLAGS = ("avx512_bf16", "amx_bf16")
# peft tuners whose layers multiply the frozen weight by their own rotation in elementwise ops too
# (OFT, BOFT): the result depends on the weight's stored dtype, not only on the matmul's.
_REBUILT = ("peft.tuners.oft.", "peft.tuners.boft.")


@functools.cache
def _cpu_reports_bf16() -> bool:
    # torch asks the CPU itself (cpuinfo), on every OS; the functions are private, so /proc/cpuinfo's
    # flags are the fallback on a torch without them.
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(p) for p in probes):
        return any(p() for p in probes)
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in _FLAGS)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX); PEFTLAB_CPU_BF16=0/1 overrides."""
    override = os.environ.get(ENV_CPU_BF16, "").strip()
    if override in ("0", "1"):
        return override == "1"
    if override:
        raise PeftlabError(
            f"environment variable {ENV_CPU_BF16} must be 0 or 1 (or unset to ask the CPU), got {override!r}"
        )
    return _cpu_reports_bf16()


def compute_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``; None means the weights' own dtype.

    auto: bf16 on a GPU and on a CPU with native bf16 (``cpu_has_bf16``), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and (torch.device(device).type == "cuda" or cpu_has_bf16()):
        return torch.bfloat16
    return None


def run_dtypes(model_dtype: str, precision: str, device: torch.device | str) -> tuple[torch.dtype, torch.dtype | None]:
    """(weights, compute): the dtype a run's weights are held in and its autocast dtype, the same for
    training and for every re-load of the finished run (models/loading.py load_as_trained).

    model.dtype auto keeps fp32 weights on every device (the optimizer's masters; only the matmuls run
    in train.precision's dtype), so a GPU does not hold a bf16 model where training held fp32 and
    re-evaluation matches summary.json; a named dtype is stored as named."""
    weights = torch.float32 if model_dtype == "auto" else getattr(torch, model_dtype)
    return weights, compute_dtype(precision, device)


def dtype_name(compute: torch.dtype | None, weights: torch.dtype) -> str:
    """What a run's matmuls computed in, as summary.json records it ("bfloat16", "float32")."""
    return str(compute or weights).removeprefix("torch.")


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """The context every forward pass of a run runs in (a no-op for fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _dora(module: torch.nn.Module) -> bool:
    """A peft LoRA layer with DoRA: its magnitude divides by the column norm of base weight + delta,
    computed from the weights' stored dtype, so bf16 storage would change the output."""
    flags = getattr(module, "use_dora", None)
    return isinstance(flags, dict) and any(flags.values())


def store_frozen_linears(model: torch.nn.Module, dtype: torch.dtype | None) -> int:
    """Store the weights (and biases) of frozen plain ``nn.Linear`` layers in ``dtype``; returns how many
    tensors changed. The forwards compute exactly what they computed before, faster.

    Why: autocast casts a matmul's fp32 weight to bf16 on every call, and caches the cast only for
    weights that require grad (torch's autocast cache). The frozen base model of every PEFT method was
    therefore recast in full at every forward: at each generated token during evaluation (3x slower
    LoRA validation than full fine-tuning's in the demo, bench/RESULTS.md) and at every training step.
    Storing that cast once gives the same bits: autocast's cast is ``weight.to(bf16)``, and a weight
    already in bf16 is passed through. Frozen weights need no fp32 master copy (no optimizer updates
    them). Left alone: trainable weights, subclasses of nn.Linear (quantized layers), weights shared
    with another module (tied embeddings: an embedding lookup is not autocast, so its output would
    change), the base layers of tuners that rebuild the weight outside a matmul (``_REBUILT``, DoRA) and
    every non-Linear tensor (layer norms and embeddings run in fp32 under autocast).
    tests/test_frozen_bf16.py checks the same bits for every method on every tiny architecture."""
    if dtype is None:
        return 0
    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[p.data_ptr()] = counts.get(p.data_ptr(), 0) + 1
    rebuilt = {
        id(m.base_layer)
        for m in model.modules()
        if type(m).__module__.startswith(_REBUILT) and hasattr(m, "base_layer")
    }
    # DoRA: the base and its own lora_A / lora_B (frozen when a finished run is loaded) all enter the norm.
    rebuilt |= {id(inner) for m in model.modules() if _dora(m) for inner in m.modules()}
    changed = 0
    for module in model.modules():
        if type(module) is not torch.nn.Linear or id(module) in rebuilt:
            continue
        for name in ("weight", "bias"):
            p = getattr(module, name)
            if p is None or p.requires_grad or p.dtype != torch.float32 or counts[p.data_ptr()] > 1:
                continue
            p.data = p.data.to(dtype)
            changed += 1
    return changed
