"""Which training examples go together in a step, and in what order.

- Every epoch is a fresh seeded permutation that can start mid-epoch, so a resumed run draws the
  batches an uninterrupted run would have drawn (a DataLoader's own shuffle cannot be positioned).
- Length grouping: inside windows of ``MEGABATCH`` batches, examples are sorted by length and cut
  into batches whose order is then shuffled again, so each batch pads little and the order stays
  random (the scheme of transformers' ``group_by_length``; peftlab's sampler must also be
  resumable, which transformers' is not, hence this one).
- Data parallelism: one DataLoader batch is the step's global micro-batch; every process collates
  it into one shard per process and trains on its own shard, and every process can count the whole
  step's examples, tokens, FLOPs and labelled tokens without talking to the others.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler

MEGABATCH = 50  # batches per length-sorted window, as in transformers' LengthGroupedSampler


class EpochSampler(Sampler):
    """Seeded per-epoch order (``epoch``, ``offset`` say where it is), optionally grouped by length."""

    def __init__(self, n: int, seed: int, lengths: list[int] | None = None, batch_size: int = 1):
        self.n, self.seed, self.epoch, self.offset = n, seed, 0, 0
        self.lengths, self.batch_size = lengths, batch_size

    def __len__(self) -> int:
        return self.n - self.offset

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.lengths is None:
            return order
        size, out = self.batch_size, []
        for start in range(0, self.n, size * MEGABATCH):
            window = sorted(order[start : start + size * MEGABATCH], key=lambda i: -self.lengths[i])
            batches = [window[j : j + size] for j in range(0, len(window), size)]
            full = [b for b in batches if len(b) == size]  # a short last batch stays last (the loader cuts by size)
            for k in torch.randperm(len(full), generator=g).tolist():
                out.extend(full[k])
            out.extend(i for b in batches if len(b) < size for i in b)
        return out

    def __iter__(self):
        for i in self.order(self.epoch)[self.offset :]:
            self.offset += 1
            yield i
        self.epoch, self.offset = self.epoch + 1, 0


class ShardedCollate:
    """Collates one global micro-batch into a shard per process (contiguous slices of it)."""

    def __init__(self, collate, per_process: int, processes: int):
        self.collate, self.per_process, self.processes = collate, per_process, processes

    def __call__(self, features: list[dict]) -> list[dict[str, torch.Tensor]]:
        p = self.per_process
        return [
            self.collate(features[r * p : (r + 1) * p]) for r in range(self.processes) if features[r * p : (r + 1) * p]
        ]


def batches_forever(loader):
    while True:
        yield from loader
