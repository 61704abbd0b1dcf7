"""Prefill a left-padded batch in groups of similar length, then decode it as one batch.

A batch of generation prompts is padded to its longest row. On DialogSum, 16 length-sorted test
dialogues of 130-470 tokens padded to 472 are 45% padding: nearly half of the prefill's matmuls work
on tokens that are masked away. Decoding wants the opposite: many rows per step, because a step reads
every weight once whatever the number of rows. So the rows are prefilled in consecutive groups whose
padding stays under ``WASTE`` of their real tokens (a row alone when nothing near its length is
left), and the groups' KV caches are laid side by side, each row right-aligned, into one left-padded
cache with room reserved for the new tokens (models/kv_room.py), the layout a padded prefill leaves.
Each row sees the same keys in the same order at the same positions, so nothing changes in exact
arithmetic; the matrix shapes differ, so the last bits may (the tests and bench/generation.py check
the tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicLayer

from peftlab.models.kv_room import RoomyLayer

# A group takes the next row while its padding stays within this share of its real tokens.
WASTE = 0.125


@dataclass
class Piece:
    """One group's prefill: each row's next-token logits, its cache and its mask (head + own columns)."""

    logits: torch.Tensor  # (g, vocab)
    cache: object  # DynamicCache of g rows
    mask: torch.Tensor  # (g, head + width)


def length_groups(lengths: list[int], waste: float = WASTE) -> list[list[int]]:
    """Consecutive rows grouped so that padding each group to its longest row costs at most ``waste``
    of its real tokens. Rows come longest first from Backbone.generate_ids, so a group is a run of
    similar lengths; any order is valid, only less grouped."""
    groups: list[list[int]] = []
    for i in range(len(lengths)):
        if groups:
            group = groups[-1] + [i]
            longest, real = max(lengths[j] for j in group), sum(lengths[j] for j in group)
            if len(group) * longest <= (1 + waste) * real:
                groups[-1] = group
                continue
        groups.append([i])
    return groups


def sorted_groups(lengths: dict[int, int], waste: float = WASTE) -> list[list[int]]:
    """The items of ``lengths`` (item -> length) sorted longest first, then grouped as ``length_groups``
    groups them (option scoring: models/causal.py, models/seq2seq.py)."""
    order = sorted(lengths, key=lambda i: -lengths[i])
    return [[order[g] for g in group] for group in length_groups([lengths[i] for i in order], waste)]


def trimmed(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A left-padded group without the columns that are padding in every row."""
    width = int(mask.sum(-1).max())
    return ids[:, -width:], mask[:, -width:]


def merged(pieces: list[Piece], head: int, room: int) -> tuple[list[RoomyLayer], torch.Tensor]:
    """The pieces' caches as one left-padded batch: per layer a RoomyLayer with ``room`` spare
    positions, and the batch's mask. ``head`` leading columns (a prefix's virtual tokens, a shared
    prompt prefix) are the same in every piece and stay in front; each row's own columns end at the
    right edge."""
    width = max(p.mask.shape[1] for p in pieces)
    rows = sum(p.mask.shape[0] for p in pieces)
    first = pieces[0].mask
    mask = first.new_zeros((rows, width))
    layers = []
    for layer in pieces[0].cache.layers:
        if type(layer) is not DynamicLayer:  # a sliding window keeps other slots: such models are not grouped
            raise TypeError(f"cannot merge a {type(layer).__name__} cache layer")
        shape = layer.keys.shape
        keys = layer.keys.new_zeros((rows, shape[1], width + room, shape[3]))
        values = layer.values.new_zeros((rows, shape[1], width + room, layer.values.shape[3]))
        layers.append(RoomyLayer.filled(keys, values, width))
    start = 0
    for piece in pieces:
        g, w = piece.mask.shape
        end, gap = start + g, width - w
        mask[start:end, :head] = piece.mask[:, :head]
        mask[start:end, head + gap :] = piece.mask[:, head:]
        for layer, source in zip(layers, piece.cache.layers):
            layer.place(slice(start, end), source.keys, source.values, head, gap)
        start = end
    return layers, mask
