"""What a method costs at inference: prefill (processing the prompt) and decode (each generated token)
timed apart, and peak memory, at batch 1 and batch 16, with the adapter as trained (unmerged) and,
where the method can be folded into the weights (LoRA, IA3, the peft types that merge:
``Method.merges``), merged.

Users ask for it (AdapterHub #495: "we don't have statistics on latency, GPU memory"): an adapter
that is cheap to train may still slow every request (prompt tuning lengthens every sequence, an
unmerged LoRA adds two small matmuls per layer), and merging removes that cost for some methods only.

How it is measured, so that the figure is the method's and nothing else's:
- alone: the training loop's optimizer state and gradients are freed first (``release_training``),
  and merged and unmerged are timed one after the other on ONE model: unmerged first, then the
  model is merged in place (the adapter was saved before) and timed again; no copy is made;
- every sequence decodes exactly ``NEW_TOKENS`` tokens, EOS ignored: a method that stops early is
  not charged its prompt over fewer tokens, one that rambles to the cap does not look cheap;
- prefill and decode apart: prefill = the forward over the prompt (ms per prompt and per prompt
  token); decode = each later forward of one new token (ms per generated token; at batch 16 the
  step's time / 16: the amortised cost of one token of one request);
- after a warm-up call, as medians: at batch 1 over each of the first ``PROMPTS`` test prompts
  timed alone, at batch 16 over ``BATCH_REPEATS`` repeats of those prompts as one batch.

Peak memory is ``cost.PeakMemory`` around the timed calls: on a GPU the allocated peak; on a CPU the
process's resident set (after freed memory is handed back to the OS where glibc allows), which is
the loaded model plus generation's caches; compare methods with it, not with another machine's figure.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from peftlab.measure.cost import PeakMemory
from peftlab.models.backbone import Backbone
from peftlab.models.decode import decoder_for
from peftlab.rundir.summary import InferenceCost, InferencePoint

BATCHES = (1, 16)
PROMPTS = 16  # batch 1 times each alone; batch 16 times them as one batch
BATCH_REPEATS = 5  # batch 16's repeats (batch 1's samples are its PROMPTS prompts)
NEW_TOKENS = 32  # every sequence decodes exactly this many tokens, EOS ignored


@dataclass
class Timing:
    """One timed generation: prefill and decode seconds, and what they processed."""

    prefill_s: float
    decode_s: float
    rows: int  # sequences in the batch
    prompt_tokens: int  # real (unpadded) prompt tokens over the batch
    tokens: torch.Tensor  # (rows, new_tokens): every token decoded, EOS included wherever it came


def release_training(accelerator=None, model: nn.Module | None = None) -> None:
    """Free what training held before inference is measured: the accelerator's references to the
    prepared optimizer (AdamW's two moments per trainable weight for full fine-tuning), model and data
    loaders, and every gradient; then collect and hand freed memory back (a CPU peak is the resident
    set, which would otherwise still hold the freed optimizer's pages)."""
    if accelerator is not None:
        accelerator.free_memory()
    if model is not None:
        for p in model.parameters():
            p.grad = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    _trim_heap()


def _trim_heap() -> None:
    # glibc keeps freed heap pages mapped; malloc_trim returns them so the RSS shows live memory only.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (macOS, musl): the resident set may hold freed pages


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels are asynchronous: time the work, not its launch


@torch.no_grad()
def timed_generation(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, new_tokens: int) -> Timing:
    """Greedy decoding of exactly ``new_tokens`` tokens per row with EOS ignored (peftlab's decoder,
    models/decode.py), prefill and decode timed apart. The first token comes from the prefill's
    logits; decode is the ``new_tokens - 1`` single-token steps after it."""
    decoder = decoder_for(model)
    _sync(ids.device)
    start = time.perf_counter()
    token = decoder.prefill(ids, mask).argmax(-1)
    _sync(ids.device)
    prefilled = time.perf_counter()
    tokens = [token]
    for _ in range(new_tokens - 1):
        token = decoder.step(token).argmax(-1)
        tokens.append(token)
    _sync(ids.device)
    end = time.perf_counter()
    return Timing(prefilled - start, end - prefilled, ids.shape[0], int(mask.sum()), torch.stack(tokens, dim=1))


def _batches(backbone: Backbone, prompts: list[str], batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    encoded = [backbone.prompt_ids(p) for p in prompts]
    if batch == 1:
        return [backbone.pad_prompts([e]) for e in encoded]
    rows = (encoded * batch)[:batch]  # fewer test prompts than the batch: repeated to fill it
    return [backbone.pad_prompts(rows)] * BATCH_REPEATS


def _median_ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 4)


def _point(backbone: Backbone, model: nn.Module, prompts: list[str], batch: int, new_tokens: int) -> InferencePoint:
    batches = _batches(backbone, prompts, batch)
    timed_generation(model, *batches[0], new_tokens=2)  # warm-up: first-call costs (allocations, kernels)
    with PeakMemory() as memory, memory.step():
        timings = [timed_generation(model, ids, mask, new_tokens) for ids, mask in batches]
    steps = max(new_tokens - 1, 1)
    return InferencePoint(
        prefill_ms_per_prompt=_median_ms([t.prefill_s / t.rows for t in timings]),
        prefill_ms_per_prompt_token=_median_ms([t.prefill_s / t.prompt_tokens for t in timings]),
        decode_ms_per_token=_median_ms([t.decode_s / (steps * t.rows) for t in timings]),
        samples=len(timings),
        peak_memory_bytes=memory.train_peak,
    )


def _points(backbone: Backbone, model: nn.Module, prompts: list[str], new_tokens: int) -> dict:
    model.eval()
    with backbone.numerics():
        return {f"batch_{b}": _point(backbone, model, prompts, b, new_tokens) for b in BATCHES}


def measure(
    backbone: Backbone, model: nn.Module, mergeable: bool, prompts: list[str], new_tokens: int = NEW_TOKENS
) -> InferenceCost:
    """The method's inference cost on the first ``PROMPTS`` of ``prompts``; merged too when ``mergeable``
    (``Method.merges(options)``).

    Merging is IN PLACE (``merge_and_unload``: W <- W + delta, the adapter layers removed), so that
    only one model is ever resident: call this last, after the adapter is saved; afterwards ``model``
    computes the same function but is no longer an adapter to save."""
    start = time.perf_counter()
    prompts = prompts[:PROMPTS]
    unmerged = _points(backbone, model, prompts, new_tokens)
    merged = None
    if mergeable and hasattr(model, "merge_and_unload"):
        folded = model.merge_and_unload()  # the same modules, adapter folded in: no second model
        merged = _points(backbone, folded, prompts, new_tokens)
        del folded
    seconds = round(time.perf_counter() - start, 3)
    return InferenceCost(new_tokens=new_tokens, unmerged=unmerged, merged=merged, seconds=seconds)
