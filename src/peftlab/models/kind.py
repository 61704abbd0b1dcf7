"""What a model family's two kinds share, and which kind a model is.

A decoder-only model (GPT-Neo, Llama/SmolLM2) reads prompt and target as one sequence; an
encoder-decoder (T5) reads the prompt in its encoder and the target in its decoder. Everything that
depends on this difference lives in two strategy objects, ``CAUSAL`` (models/causal.py) and
``SEQ2SEQ`` (models/seq2seq.py), each owning the same operations: encoding an example, counting the
tokens that carry a loss, the loss at those tokens, continuation log-probabilities, the padding side
of generation prompts and the stack where attribution moves the input. ``Backbone.kind`` holds the
model's; no other module asks which kind it has.
"""

from __future__ import annotations

import torch
from torch import nn

IGNORE = -100  # the label of a position without a loss (cross_entropy's ignore_index)


def output_head(model: nn.Module) -> nn.Module | None:
    """The Linear that maps hidden states to vocabulary logits (peft wrappers delegate to the base)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if get is not None else None
    return head if isinstance(head, nn.Module) else None


def right_pad(rows: list[list[int]], value: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tensor, mask) of ``rows`` right-padded with ``value`` to ``width`` (default: the longest row)."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return out, mask
