"""How peftlab lays out rows of token ids: the label of a position without a loss, and right padding.

A leaf module (torch only): both model kinds (causal.py, seq2seq.py) build on it, and kind.py imports
the kinds, so these helpers cannot live in kind.py without an import cycle.
"""

from __future__ import annotations

import torch

IGNORE = -100  # the label of a position without a loss (cross_entropy's ignore_index)


def right_pad(rows: list[list[int]], value: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tensor, mask) of ``rows`` right-padded with ``value`` to ``width`` (default: the longest row)."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return out, mask
