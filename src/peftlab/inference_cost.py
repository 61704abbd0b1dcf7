"""What a method costs at inference: milliseconds per generated token and peak memory, at batch 1
and batch 16, with the adapter as trained (unmerged) and, where the method can be folded into the
weights (LoRA, IA3, the peft types that merge: ``Method.merges``), merged.

Users ask for it (AdapterHub #495: "we don't have statistics on latency, GPU memory"): an adapter
that is cheap to train may still slow every request (prompt tuning lengthens every sequence, an
unmerged LoRA adds two small matmuls per layer), and merging removes that cost for some methods only.

Measured after the test, on the run's first test prompts, with peftlab's own decoder (greedy, the
same for every method), after one warm-up call: ms per token = wall time / tokens generated (every
sequence's, EOS included), so at batch 16 it is the amortised cost of one token of one request. Peak
memory is ``cost.PeakMemory`` around the generation: on a GPU the allocated peak; on a CPU the
process's resident set, which also holds what the allocator kept from training (compare methods
with it, not with another machine's figure). The merged model is a copy (``merge_and_unload``), so
the run's own model, saved before, is untouched.
"""

from __future__ import annotations

import copy
import time

from torch import nn

from peftlab.cost import PeakMemory
from peftlab.models.backbone import Backbone
from peftlab.summary import InferenceCost, InferencePoint

BATCHES = (1, 16)
SINGLE_PROMPTS = 4  # batch 1 is timed over this many prompts, one at a time
MAX_NEW_TOKENS = 32


def _point(backbone: Backbone, model: nn.Module, prompts: list[str], batch: int, max_new_tokens: int):
    chunks = [[p] for p in prompts[:SINGLE_PROMPTS]] if batch == 1 else [(prompts * batch)[:batch]]
    backbone.generate_ids(model, chunks[0], max_new_tokens=2, batch_size=batch)  # warm-up: first-call costs
    tokens = 0
    with PeakMemory() as memory, memory.step():
        start = time.perf_counter()
        for chunk in chunks:
            tokens += sum(len(ids) for ids in backbone.generate_ids(model, chunk, max_new_tokens, batch_size=batch))
        seconds = time.perf_counter() - start
    return InferencePoint(ms_per_token=round(1000 * seconds / max(tokens, 1), 3), peak_memory_bytes=memory.train_peak)


def _points(backbone: Backbone, model: nn.Module, prompts: list[str], max_new_tokens: int) -> dict:
    with backbone.numerics():
        return {f"batch_{b}": _point(backbone, model, prompts, b, max_new_tokens) for b in BATCHES}


def measure(backbone: Backbone, model: nn.Module, mergeable: bool, prompts: list[str], max_new_tokens: int):
    """The method's inference cost on ``prompts`` (the first 16 are used); merged too when ``mergeable``
    (``Method.merges(options)``)."""
    start = time.perf_counter()
    max_new_tokens = min(max_new_tokens, MAX_NEW_TOKENS)
    prompts = prompts[: max(BATCHES)]
    model.eval()
    unmerged = _points(backbone, model, prompts, max_new_tokens)
    merged = None
    if mergeable and hasattr(model, "merge_and_unload"):
        folded = copy.deepcopy(model).merge_and_unload()  # W <- W + delta; the run's model stays as it is
        merged = _points(backbone, folded.eval(), prompts, max_new_tokens)
        del folded
    seconds = round(time.perf_counter() - start, 3)
    return InferenceCost(max_new_tokens=max_new_tokens, unmerged=unmerged, merged=merged, seconds=seconds)
