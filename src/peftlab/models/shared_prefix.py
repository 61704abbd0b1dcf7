"""The prompt's shared prefix, prefilled once per batch instead of once per row (decoder-only models).

Every prompt of a task starts the same way: the chat template's system turn, the instruction, a
schema. A batch of 16 left-padded prompts runs that prefix through the model 16 times. Here it runs
once, at batch 1, its KV cache is repeated to the batch (DynamicCache.batch_repeat_interleave), and
only each row's suffix is prefilled on top of it. On the built-in text-to-SQL task 45 of a prompt's
~62 tokens are shared, so prefill does ~30% of the work.

The cache then holds, per row, [prefix][padding][suffix] instead of [padding][prefix][suffix]: the
row's tokens keep their positions (counted over attended slots, models/forward.positions) and attend
to the same keys in the same order, so in exact arithmetic nothing changes. In floating point the
prefix's projections are computed at another matrix shape, which may round differently: predictions
are token for token the same on the tests' models and were measured on real test sets
(bench/shared_prefix.py). Not used where the gap would change what a row sees: local or
sliding-window attention counts a key's reach in cache slots (Causal.padding_moves_prefix).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Below this many shared tokens the extra forward costs more than it saves.
MIN_SHARED = 8


@dataclass
class Split:
    """A left-padded batch as its shared prefix and each row's left-padded suffix."""

    prefix: torch.Tensor  # (1, P) token ids
    suffix: torch.Tensor  # (B, W) token ids, left-padded
    suffix_mask: torch.Tensor  # (B, W)


def shared_length(ids: torch.Tensor, mask: torch.Tensor) -> int:
    """How many leading tokens every row of a left-padded batch shares, leaving each row at least one
    token of its own (its last position gives the first generated token's logits)."""
    lengths = mask.sum(-1)
    shortest = int(lengths.min())
    if ids.shape[0] < 2 or shortest < 2:
        return 0
    starts = ids.shape[1] - lengths
    heads = ids.gather(1, starts[:, None] + torch.arange(shortest, device=ids.device))
    same = (heads == heads[:1]).all(0).long()
    return min(int(same.cumprod(0).sum()), shortest - 1)


def split(ids: torch.Tensor, mask: torch.Tensor, shared: int) -> Split:
    """The batch cut after ``shared`` leading tokens (``shared_length``). A short row's suffix columns
    before its own tokens hold some of its prefix's tokens: masked, so what they hold does not matter."""
    lengths = mask.sum(-1)
    width = int(lengths.max()) - shared
    own = lengths - shared  # each row's suffix length, >= 1
    suffix_mask = (torch.arange(width, device=ids.device) >= (width - own)[:, None]).to(mask.dtype)
    start = ids.shape[1] - int(lengths[0])
    return Split(ids[:1, start : start + shared], ids[:, -width:], suffix_mask)
