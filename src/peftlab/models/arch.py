"""Module names of the architectures peftlab knows, in one table. Methods and measurements find
sublayers by these child names, so a model family with the same names (Mistral, Qwen2 and SmolLM2
name theirs like Llama) works without an entry of its own.

| family  | blocks               | self-attention           | q, k, v              | feed-forward         |
|---------|----------------------|--------------------------|----------------------|----------------------|
| Llama   | model.layers         | self_attn                | q_proj k_proj v_proj | mlp                  |
| GPT-Neo | transformer.h        | attn (child: attention)  | q_proj k_proj v_proj | mlp                  |
| T5      | encoder/decoder.block| SelfAttention (cross:    | q k v                | DenseReluDense (in   |
|         |                      | EncDecAttention)         |                      | T5LayerFF)           |
| BERT    | encoder.layer        | attention.self           | query key value      | intermediate, output |

Read by parallel adapters (where the adapter goes), FLOPs (which modules multiply queries and
keys), `peftlab params` (grouping parameters by name) and last layers (the block lists).
"""

from __future__ import annotations

# Child name of a block's feed-forward sublayer (the parallel adapter's FFN target).
FFN = ("mlp", "DenseReluDense")
# Child name of a block's self-attention sublayer; T5's cross-attention (EncDecAttention) is not one.
SELF_ATTENTION = ("self_attn", "attn", "SelfAttention")
# The (query, key, value) projections of an attention module, as children of it.
QKV = (("q", "k", "v"), ("q_proj", "k_proj", "v_proj"), ("query", "key", "value"))
# Name parts that put a parameter in a group for `peftlab params` (first match wins there).
FFN_PARTS = (*FFN, "ffn", "feed_forward")
ATTENTION_PARTS = ("attn", "attention")  # matched case-insensitively inside a name
EMBEDDING_PARTS = ("embed_tokens", "wte", "wpe", "shared", "embed_positions", "word_embeddings")
HEAD_PARTS = ("lm_head",)
