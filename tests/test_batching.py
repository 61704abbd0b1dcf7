"""peftlab.training.batching: seeded resumable order, length grouping, shards per process."""

from __future__ import annotations

import random

import torch

from peftlab.training.batching import EpochSampler, ShardedCollate


def padded_tokens(order: list[int], lengths: list[int], batch: int) -> int:
    return sum(
        max(lengths[i] for i in order[j : j + batch]) * len(order[j : j + batch]) for j in range(0, len(order), batch)
    )


def test_length_grouping_cuts_padding_and_keeps_every_example_once_per_epoch():
    rng = random.Random(0)
    lengths = [rng.randint(20, 600) for _ in range(1000)]
    plain, grouped = EpochSampler(1000, seed=3), EpochSampler(1000, seed=3, lengths=lengths, batch_size=8)
    for epoch in range(2):
        order = grouped.order(epoch)
        assert sorted(order) == list(range(1000))
        real = sum(lengths)
        waste_grouped = padded_tokens(order, lengths, 8) - real
        waste_plain = padded_tokens(plain.order(epoch), lengths, 8) - real
        assert waste_grouped < 0.1 * waste_plain, (waste_grouped, waste_plain)
    assert grouped.order(0) != grouped.order(1)  # a fresh order every epoch


def test_grouped_batches_come_in_random_order_not_longest_first():
    lengths = list(range(400))
    order = EpochSampler(400, seed=0, lengths=lengths, batch_size=4).order(0)
    firsts = [lengths[order[j]] for j in range(0, 400, 4)]
    assert firsts != sorted(firsts, reverse=True) and firsts != sorted(firsts)


def test_a_short_last_batch_stays_last():
    lengths = list(range(10))
    order = EpochSampler(10, seed=1, lengths=lengths, batch_size=4).order(0)
    batches = [order[j : j + 4] for j in range(0, 10, 4)]
    assert [len(b) for b in batches] == [4, 4, 2]
    for b in batches[:2]:  # each full batch holds neighbours in length
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) == 3


def test_the_sampler_resumes_mid_epoch_where_it_stopped():
    lengths = [random.Random(i).randint(1, 99) for i in range(50)]
    a = EpochSampler(50, seed=5, lengths=lengths, batch_size=4)
    first = list(a)
    it = iter(a)
    second_part = [next(it) for _ in range(17)]
    b = EpochSampler(50, seed=5, lengths=lengths, batch_size=4)
    b.epoch, b.offset = a.epoch, a.offset  # what a checkpoint stores
    assert second_part + list(b) == a.order(1) and first == a.order(0)


def test_sharded_collate_gives_each_process_a_contiguous_slice():
    def collate(features):
        return {"input_ids": torch.tensor([[f] for f in features])}

    shards = ShardedCollate(collate, per_process=2, processes=3)(list(range(6)))
    assert [s["input_ids"].flatten().tolist() for s in shards] == [[0, 1], [2, 3], [4, 5]]
    assert len(ShardedCollate(collate, 2, 3)(list(range(3)))) == 2  # a short batch fills what it can
