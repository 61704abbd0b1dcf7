"""Tiny random models for tests: one per architecture family peftlab supports.

Built from config (no download) with a fixed seed, so the same name always gives bit-identical
weights: a run on a tiny model can be reloaded onto a "fresh base" and compared exactly.
The tokenizer is ByT5's byte-level tokenizer, which needs no vocabulary file (in transformers 5,
``T5Tokenizer(vocab_file=...)`` silently ignores the file).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    ByT5Tokenizer,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

# A minimal chat template, so the chat-formatting path is exercised on a tiny model too.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)

TINY_MODELS = ("tiny-t5", "tiny-gpt-neo", "tiny-llama")
VOCAB = 384  # ByT5: 3 specials + 256 bytes + 125 sentinels
PAD, EOS = 0, 1
# With the usual 0.02 init and hidden size 32, frozen embeddings give logits of at most ~0.6 in
# magnitude, so no adapter could lower the loss much: a wider init makes the tiny models learnable.
INIT_RANGE = 0.25


def _tiny_t5() -> nn.Module:
    cfg = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
    )
    model = T5ForConditionalGeneration(cfg)
    # FLAN-T5 has an lm_head of its own; transformers 5's T5 ties it to `shared` whatever the
    # config says, so give it its own copy (as a FLAN-T5 checkpoint loads).
    model.lm_head.weight = nn.Parameter(model.shared.weight.detach().clone())
    return model


def _tiny_gpt_neo() -> nn.Module:
    cfg = GPTNeoConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
        attention_types=[[["global", "local"], 1]],
        window_size=64,
        max_position_embeddings=512,
        bos_token_id=EOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        initializer_range=INIT_RANGE,
    )
    model = GPTNeoForCausalLM(cfg)
    return model


def _tiny_llama() -> nn.Module:
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=EOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        tie_word_embeddings=True,  # like SmolLM2
        initializer_range=INIT_RANGE,
    )
    model = LlamaForCausalLM(cfg)
    return model


BUILDERS = {"tiny-t5": _tiny_t5, "tiny-gpt-neo": _tiny_gpt_neo, "tiny-llama": _tiny_llama}


def tiny_model(name: str, seed: int = 0):
    """(model, tokenizer) for one of TINY_MODELS, random weights from ``seed``."""
    if name not in BUILDERS:
        raise ValueError(f"unknown tiny model {name!r}; choose from {TINY_MODELS}")
    tok = ByT5Tokenizer()
    # Its own random stream: loading the model must not reset the run's (a method's initialisation
    # after loading follows the run seed, as with any real model).
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BUILDERS[name]()
    if name == "tiny-llama":
        tok.chat_template = TINY_CHAT_TEMPLATE
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = EOS
    return model.float().eval(), tok
