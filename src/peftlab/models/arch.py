"""Module names of the architectures peftlab knows, in one table. Methods and measurements find
sublayers by these child names, so a model family with the same names (Mistral, Qwen2 and SmolLM2
name theirs like Llama) works without an entry of its own.

| family  | blocks                | final norm       | self-attention    | q, k, v              | feed-forward         |
|---------|-----------------------|------------------|-------------------|----------------------|----------------------|
| Llama   | model.layers          | model.norm       | self_attn         | q_proj k_proj v_proj | mlp                  |
| GPT-Neo | transformer.h         | transformer.ln_f | attn (.attention) | q_proj k_proj v_proj | mlp                  |
| T5      | encoder/decoder.block | final_layer_norm | SelfAttention     | q k v                | DenseReluDense       |
| BERT    | encoder.layer         | (none)           | attention.self    | query key value      | intermediate, output |

T5's cross-attention (EncDecAttention) is not a self-attention; its feed-forward sits in T5LayerFF.

Read by parallel adapters (where the adapter goes), FLOPs (which modules multiply queries and
keys), `peftlab params` (grouping parameters by name) and last layers (the block lists and final
norms of a stack; which stacks a model has is its kind's, models/kind.py).
"""

from __future__ import annotations

# Child name of a stack's list of transformer blocks (the stacks: ModelKind.stacks).
BLOCKS = ("layers", "h", "block", "layer")
# Child name of the norm after a stack's last block.
FINAL_NORM = ("norm", "ln_f", "final_layer_norm")
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
