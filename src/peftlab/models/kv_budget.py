"""How many prompts may decode together: a row cap and a cap on the KV cache they fill.

More rows per decode step is faster (a step reads every weight once, whatever the rows), until the
cache, which grows with rows x (prompt + new tokens), no longer fits. The cap is estimated from the
model's config at 4 bytes a value (fp32; a bf16 cache takes half): keys and values of every decoder
layer and key/value head, per token of the prompt and of the answer (for an encoder-decoder model the
prompt's tokens fill the cross-attention cache, the answer's the self-attention one).
"""

from __future__ import annotations

from collections.abc import Iterator

GB = 1e9


def kv_bytes_per_token(config) -> int:
    """Bytes of KV cache one token adds across the decoder's layers (estimated, fp32)."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layers = _first(text, "num_decoder_layers", "num_hidden_layers", "num_layers", "n_layer")
    heads = _first(text, "num_attention_heads", "num_heads", "n_head")
    kv_heads = _first(text, "num_key_value_heads", default=heads)
    head_dim = _first(text, "head_dim", "d_kv", default=_first(text, "hidden_size", "d_model", "n_embd") // heads)
    return 2 * layers * kv_heads * head_dim * 4


def _first(config, *names: str, default: int | None = None) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    if default is None:
        raise ValueError(f"the model's config has none of {', '.join(names)}")
    return default


def batches(
    order: list[int],
    lengths: list[int],
    batch_size: int,
    equal_lengths: bool = False,
    row_bytes=lambda length: 0,
    budget: float | None = None,
) -> Iterator[list[int]]:
    """Consecutive slices of ``order`` (longest first): at most ``batch_size`` rows, and, with a
    ``budget`` in bytes, no more rows than fit it at ``row_bytes(length)`` each for the batch's first
    (longest) row; with ``equal_lengths`` a batch holds prompts of one length only (no padding). A
    row that alone passes the budget still gets a batch of its own."""
    batch: list[int] = []
    for i in order:
        if batch:
            full = len(batch) == batch_size or (
                budget is not None and (len(batch) + 1) * row_bytes(lengths[batch[0]]) > budget
            )
            if full or (equal_lengths and lengths[i] != lengths[batch[0]]):
                yield batch
                batch = []
        batch.append(i)
    if batch:
        yield batch
