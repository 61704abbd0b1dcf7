"""A KV cache with room reserved for the tokens still to come, so a decode step writes its keys and
values in place instead of copying the whole cache.

transformers' DynamicLayer grows by ``torch.cat``: every decode step copies every layer's keys and
values so far, which for a 300-token prompt at batch 16 moves more bytes than the step's matmuls read.
StaticCache avoids the copy but attends over its whole length every step (masked), and its shapes
are fixed at creation, before peftlab's prefill (shared prefix, soft prompt, prefix) has run. Here,
after the prefill, each layer's keys and values move once into a buffer with ``room`` more positions,
and the layer hands attention a view of the filled part: the same values, in the same order, read
where they lie. Missing upstream: a dynamic cache layer with reserved capacity.
"""

from __future__ import annotations

import copy

import torch
from transformers.cache_utils import CacheLayerMixin, DynamicLayer


class RoomyLayer(DynamicLayer):
    """A DynamicLayer whose ``keys``/``values`` are views of buffers with spare positions."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int):
        super().__init__()
        self._hold(*_with_room(keys, values, room), keys.shape[-2])

    @classmethod
    def filled(cls, keys: torch.Tensor, values: torch.Tensor, length: int) -> RoomyLayer:
        """A layer over these buffers (batch, heads, capacity, head_dim) of which ``length`` positions count."""
        layer = cls.__new__(cls)
        CacheLayerMixin.__init__(layer)
        layer._hold(keys, values, length)
        return layer

    def _hold(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._keys, self._values = keys, values
        self._view(length)

    def place(self, rows: slice, keys: torch.Tensor, values: torch.Tensor, head: int, gap: int) -> None:
        """Copy a group's cache into ``rows``: its first ``head`` positions in front, the rest ``gap``
        positions further right (models/prefill_groups.merged)."""
        end = keys.shape[-2] + gap
        self._keys[rows, :, :head], self._values[rows, :, :head] = keys[:, :, :head], values[:, :, :head]
        self._keys[rows, :, head + gap : end] = keys[:, :, head:]
        self._values[rows, :, head + gap : end] = values[:, :, head:]

    def _fill(self, room: int) -> None:
        """Move the filled part to new buffers with ``room`` spare positions."""
        self._hold(*_with_room(self.keys, self.values, room), self.keys.shape[-2])

    def spare(self) -> int:
        return self._keys.shape[-2] - self.keys.shape[-2]

    def _view(self, n: int) -> None:
        self.keys, self.values = self._keys[:, :, :n], self._values[:, :, :n]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n, m = self.keys.shape[-2], key_states.shape[-2]
        if n + m > self._keys.shape[-2]:  # more than reserved: move to a buffer with room again
            self._fill(max(m, n))
        self._keys[:, :, n : n + m], self._values[:, :, n : n + m] = key_states, value_states
        self._view(n + m)
        return self.keys, self.values

    def _rows(self, rows: torch.Tensor) -> None:
        n = self.keys.shape[-2]
        self._keys, self._values = self._keys[rows], self._values[rows]
        self._view(n)

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        self._rows(beam_idx.to(self._keys.device))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._rows(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        n = self.keys.shape[-2]
        self._keys = self._keys.repeat_interleave(repeats, dim=0)
        self._values = self._values.repeat_interleave(repeats, dim=0)
        self._view(n)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0:
            self._view(self.keys.shape[-2] + tokens_to_remove)


def _with_room(keys: torch.Tensor, values: torch.Tensor, room: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Buffers holding ``keys``/``values`` followed by ``room`` unwritten positions."""
    b, h, n, d = keys.shape
    key_buffer = keys.new_empty((b, h, n + room, d))
    value_buffer = values.new_empty((b, h, n + room, values.shape[-1]))
    key_buffer[:, :, :n], value_buffer[:, :, :n] = keys, values
    return key_buffer, value_buffer


def reserve(cache, room: int):
    """Give every plain dynamic layer of ``cache`` (a DynamicCache, or the self-attention part of an
    EncoderDecoderCache) ``room`` spare positions. Sliding-window and other layer types are left as
    they are. Returns the cache."""
    inner = getattr(cache, "self_attention_cache", cache)
    layers = getattr(inner, "layers", None)
    if layers is None or room <= 0:
        return cache
    for i, layer in enumerate(layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            layers[i] = RoomyLayer(layer.keys, layer.values, room)
        elif isinstance(layer, RoomyLayer) and layer.spare() < room:
            layer._fill(room)
    return cache


def repeated(cache, rows: int):
    """A copy of a batch-1 ``cache`` repeated to ``rows`` rows; ``cache`` itself is left as it was (its
    layers' tensors are replaced, never written, by the copy's updates)."""
    twin = copy.copy(cache)
    twin.layers = [copy.copy(layer) for layer in cache.layers]
    twin.batch_repeat_interleave(rows)
    return twin
