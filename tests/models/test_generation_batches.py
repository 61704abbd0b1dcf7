"""The parts of batched generation that make it fast without changing a token: prefill in groups of
similar length merged into one cache (models/prefill_groups.py), a KV cache with room for the new
tokens (models/kv_room.py), rows leaving the batch when they end (models/decode.greedy), and the
batch's rows capped by the KV cache they fill (models/kv_budget.py). End to end, every method on every
tiny architecture decodes a padded batch as it decodes each prompt alone: tests/models/test_decode.py."""

from __future__ import annotations

import torch
from transformers import GPTNeoConfig, LlamaConfig, T5Config
from transformers.cache_utils import DynamicCache, DynamicLayer

import peftlab.models.decode as decode
from peftlab.models.kv_budget import batches, kv_bytes_per_token
from peftlab.models.kv_room import RoomyLayer, repeated, reserve
from peftlab.models.prefill_groups import Piece, length_groups, merged, sorted_groups, trimmed


def test_sorted_groups_sort_the_items_longest_first_then_group_them():
    # item -> length, in no order: 3 and 7 (6 and 7 tokens) together, 5 and 1 (2 each), 4 alone
    assert sorted_groups({1: 2, 3: 6, 4: 4, 5: 2, 7: 7}) == [[7, 3], [4], [1, 5]]
    assert sorted_groups({}) == []


def test_length_groups_keep_padding_within_an_eighth_of_the_real_tokens():
    # [100, 98]: 200 padded <= 1.125 x 198; adding 60 would make 300 > 1.125 x 258.
    # [60, 59, 58]: 180 <= 1.125 x 177; adding 10 would make 240 > 1.125 x 187.
    assert length_groups([100, 98, 60, 59, 58, 10]) == [[0, 1], [2, 3, 4], [5]]
    assert length_groups([5, 5, 5]) == [[0, 1, 2]]
    assert length_groups([7]) == [[0]]


def test_trimmed_drops_the_columns_every_row_pads():
    ids = torch.tensor([[0, 0, 0, 5, 6], [0, 0, 7, 8, 9]])
    mask = (ids != 0).long()
    cut, cut_mask = trimmed(ids, mask)
    assert cut.tolist() == [[0, 5, 6], [7, 8, 9]] and cut_mask.tolist() == [[0, 1, 1], [1, 1, 1]]


def cache_of(keys: torch.Tensor) -> DynamicCache:
    cache = DynamicCache()
    cache.update(keys, keys + 100, 0)
    return cache


def test_merged_caches_are_the_padded_layout_with_room():
    # Two groups on one head column: group A has 1 row of 3 own tokens, group B 2 rows of 1 own token
    # (one of them padded within its group: B's width is 2).
    a = torch.arange(4.0).reshape(1, 1, 4, 1)  # head + 3 own
    b = torch.tensor([[10.0, 0.0, 11.0], [10.0, 12.0, 13.0]]).reshape(2, 1, 3, 1)  # head + 2 columns
    pieces = [
        Piece(torch.zeros(1, 5), cache_of(a), torch.tensor([[1, 1, 1, 1]])),
        Piece(torch.zeros(2, 5), cache_of(b), torch.tensor([[1, 0, 1], [1, 1, 1]])),
    ]
    layers, mask = merged(pieces, head=1, room=2)
    assert mask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 1, 1]]
    keys = layers[0].keys[:, 0, :, 0]
    assert keys[0].tolist() == [0, 1, 2, 3]
    assert keys[1, [0, 3]].tolist() == [10, 11] and keys[2, [0, 2, 3]].tolist() == [10, 12, 13]
    seen = mask.bool()  # the values where a row attends are its group's values
    assert torch.equal(layers[0].values[:, 0, :, 0][seen], keys[seen] + 100)
    assert layers[0].spare() == 2


def test_a_roomy_layer_gives_what_concatenation_gives_and_moves_rows():
    start = torch.randn(3, 2, 5, 4)
    plain, roomy = DynamicLayer(), RoomyLayer(start, start * 2, room=2)
    plain.update(start, start * 2)
    for _ in range(4):  # two steps past the room: it grows
        new = torch.randn(3, 2, 1, 4)
        assert torch.equal(plain.update(new, new * 2)[0], roomy.update(new, new * 2)[0])
    assert roomy.get_seq_length() == 9 and torch.equal(roomy.values, plain.values)
    rows = torch.tensor([2, 0])
    plain.batch_select_indices(rows)
    roomy.batch_select_indices(rows)
    new = torch.randn(2, 2, 1, 4)
    assert torch.equal(plain.update(new, new)[0], roomy.update(new, new)[0])


def test_reserve_and_repeated_leave_the_original_cache_as_it_was():
    head = cache_of(torch.randn(1, 2, 3, 4))
    before = head.layers[0].keys.clone()
    copy = repeated(head, 3)
    copy.update(torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4), 0)
    assert torch.equal(head.layers[0].keys, before) and copy.layers[0].keys.shape == (3, 2, 4, 4)
    reserve(copy, 5)
    assert isinstance(copy.layers[0], RoomyLayer) and copy.layers[0].spare() == 5


class ScriptedDecoder:
    """Row r's next token is script[r][t] (as one-hot logits); records each step's row count."""

    def __init__(self, script: list[list[int]]):
        self.script, self.rows, self.t, self.widths, self.kept = script, list(range(len(script))), 0, [], []

    def _logits(self) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.tensor([self.script[r][self.t] for r in self.rows]), 10).float()

    def prefill(self, ids, mask):
        return self._logits()

    def step(self, tokens):
        assert len(tokens) == len(self.rows)
        self.widths.append(len(tokens))
        self.t += 1
        return self._logits()

    def keep_rows(self, rows):
        self.kept.append(rows.tolist())
        self.rows = [self.rows[i] for i in rows.tolist()]


def test_greedy_lets_ended_rows_leave_and_keeps_every_row_s_tokens(monkeypatch):
    eos = 9
    script = [[1, 9, 0, 0, 0], [2, 3, 4, 5, 6], [9, 0, 0, 0, 0], [4, 4, 9, 0, 0]]
    fake = ScriptedDecoder(script)
    monkeypatch.setattr(decode, "decoder_for", lambda *a, **k: fake)
    ids = torch.ones(4, 2, dtype=torch.long)
    out = decode.greedy(None, ids, torch.ones_like(ids), max_new_tokens=5, eos_token_id=eos, pad_token_id=0)
    assert out == [[1, 9], [2, 3, 4, 5, 6], [9], [4, 4, 9]]
    assert fake.widths == [3, 2, 1, 1] and fake.kept == [[0, 1, 3], [1, 2], [0]]


def test_kv_bytes_per_token_counts_key_value_heads_of_the_decoder():
    llama = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32)
    assert kv_bytes_per_token(llama) == 2 * 2 * 2 * 8 * 4  # keys and values x layers x kv heads x head_dim x fp32
    t5 = T5Config(num_layers=2, num_decoder_layers=3, num_heads=4, d_kv=8, d_model=32)
    assert kv_bytes_per_token(t5) == 2 * 3 * 4 * 8 * 4
    neo = GPTNeoConfig(num_layers=2, num_heads=4, hidden_size=32, attention_types=[[["global"], 2]])
    assert kv_bytes_per_token(neo) == 2 * 2 * 4 * 8 * 4


def test_batches_close_at_the_row_cap_or_when_the_longest_row_s_cache_would_pass_the_budget():
    lengths = [10, 9, 8, 3, 2]
    order = [0, 1, 2, 3, 4]
    assert list(batches(order, lengths, 2)) == [[0, 1], [2, 3], [4]]
    # 10 bytes a token: the first batch's rows cost 100 each, so 2 fit in 250; then 80 each: 3 fit.
    got = list(batches(order, lengths, 8, row_bytes=lambda n: 10 * n, budget=250))
    assert got == [[0, 1], [2, 3, 4]]
    assert list(batches(order, lengths, 8, row_bytes=lambda n: 10 * n, budget=50)) == [[0], [1], [2], [3], [4]]
    assert list(batches([0, 1, 2], [4, 4, 3], 8, equal_lengths=True)) == [[0, 1], [2]]
