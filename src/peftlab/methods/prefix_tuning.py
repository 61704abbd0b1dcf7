"""Prefix tuning: learned keys and values prepended in attention (Li & Liang, 2021, "Prefix-Tuning:
Optimizing Continuous Prompts for Generation", arXiv:2101.00190).

Each attention layer gets num_virtual_tokens extra key and value vectors that every query can
attend to; the model stays frozen. peft passes them in as a pre-filled KV cache. With
prefix_projection the prefix is produced by an MLP from a smaller embedding (the paper's
reparameterization of P_theta, for stable training); without it the prefix itself is the
parameter. A saved adapter always holds the computed prefix (the MLP is dropped at save time).

Decoder-only models (GPT-Neo, Llama): the prefix reaches the self-attention of every block.
On grouped-query models it has num_key_value_heads * head_dim per key (peft sizes it so). GPT-Neo's
local-attention layers see it only from the first window_size - 1 tokens (the prefix sits at the
start of the cache), so on longer inputs later tokens get it through the global layers only.

T5 (measured, peft 0.21.2 / transformers 5.23; tests/methods/test_prefix_tuning.py proves it):
the prefix reaches ONLY the decoder self-attention of each decoder block.
  - encoder self-attention: not reached (the encoder is run without a cache; its outputs do not change
    when the prefix changes);
  - decoder cross-attention: not reached directly (peft empties the cross-attention cache, so the
    keys are only the encoder's positions); its output changes only through its queries, which come
    from the prefixed decoder self-attention.
This differs from the paper, which prefixes both encoder and decoder of BART. Reaching the encoder
would need hooks inside T5's attention, outside peft's folder format, so it is documented instead.
For T5 the prefix is sized from the decoder: num_decoder_layers blocks and num_heads * d_kv per key
(peft would read the encoder's layer count and d_model, wrong for asymmetric or wide-head T5s).

Implemented with peft, so the saved adapter folder loads with ``peft.PeftModel.from_pretrained``.
"""

from __future__ import annotations

from typing import Literal

import torch
from peft import PrefixTuningConfig as PeftPrefixTuningConfig
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from peftlab.methods import peft_common
from peftlab.methods.base import Hook, Method
from peftlab.models.kind import kind_of


class PrefixTuningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_virtual_tokens: int = Field(
        20, ge=1, le=4096, description="Prefix length: extra keys/values per attention layer."
    )
    prefix_projection: bool = Field(
        False,
        description="Reparameterize the prefix through a two-layer MLP (embedding -> tanh -> keys/values) "
        "as in the paper; more trainable parameters. Its default lr is then 3e-3 instead of 1e-2 (on "
        "SmolLM2, 1e-2 was unstable with the MLP).",
    )
    init: Literal["activations", "random"] = Field(
        "activations",
        description="'activations': start from the keys/values that real vocabulary tokens produce in "
        "each layer (the paper's section 7.2 initialisation; decoder-only models without "
        "prefix_projection); 'random': peft's N(0, 1) start, which begins at a much higher loss.",
    )
    encoder_hidden_size: int | None = Field(
        None,
        ge=1,
        description="Hidden width of the prefix_projection MLP; None = the width of one key (the hidden "
        "size; num_key_value_heads * head_dim on grouped-query models). Unused without prefix_projection.",
    )


def peft_config(model: nn.Module, cfg: PrefixTuningConfig) -> PeftPrefixTuningConfig:
    return PeftPrefixTuningConfig(
        num_virtual_tokens=cfg.num_virtual_tokens,
        prefix_projection=cfg.prefix_projection,
        encoder_hidden_size=cfg.encoder_hidden_size,
        task_type=peft_common.task_type(model),
        # T5's prefix is sized from its decoder, where it lives (peft would read the encoder's sizes).
        **kind_of(model).prefix_shape(model.config),
    )


@torch.no_grad()
def init_from_activations(model: nn.Module, cfg: PrefixTuningConfig) -> None:
    """Set the prefix to the keys/values of num_virtual_tokens vocabulary tokens run through the
    frozen model, as if those tokens stood before every input. The tokens are drawn from torch's
    global generator, which train.py seeds with the run seed: another seed, another start (as for
    every other method's new parameters), the same seed, the same start.

    Li & Liang (2021, section 7.2) found initialising with real-word activations far better than
    random. peft (0.21) offers only N(0, 1); on SmolLM2 that starts the loss at ~10-18 instead of ~2.
    Decoder-only models without prefix_projection only (elsewhere peft's init is kept).
    """
    if cfg.init != "activations" or cfg.prefix_projection:
        return
    pc = model.active_peft_config
    base = model.get_base_model()
    layers = kind_of(base).prefix_activations(base, pc.num_virtual_tokens)
    if layers is None:  # a kind without this init (encoder-decoder): peft's is kept
        return
    # peft reads a row as num_layers * 2 vectors of token_dim, ordered key(layer 0), value(layer 0),
    # key(layer 1), ... each head-major: (heads, head_dim) flattened.
    rows = []
    for keys, values in layers:
        for kv in (keys, values):  # (1, kv_heads, n, head_dim)
            rows.append(kv[0].permute(1, 0, 2).reshape(pc.num_virtual_tokens, -1))
    embedding = model.prompt_encoder[model.active_adapter].embedding.weight
    embedding.copy_(torch.cat(rows, dim=1).to(embedding.dtype))


def apply(model: nn.Module, cfg: PrefixTuningConfig) -> nn.Module:
    model = peft_common.make_apply(peft_config)(model, cfg)
    init_from_activations(model, cfg)
    return model


METHOD = Method(
    name="prefix_tuning",
    paper="Li & Liang, 2021. Prefix-Tuning: Optimizing Continuous Prompts for Generation. arXiv:2101.00190.",
    config_cls=PrefixTuningConfig,
    hooks=frozenset({Hook.ATTENTION_KV}),
    default_lr=1e-2,
    # With the reparameterization MLP 1e-2 diverged on SmolLM2 while 3e-3 converged.
    default_lr_for=lambda cfg: 3e-3 if cfg.prefix_projection else 1e-2,
    apply=apply,
    save=peft_common.save,
    load=peft_common.load,
    peft_config=peft_config,
    added_markers=("prompt_encoder",),
    after_peft=init_from_activations,
    # The prefix (or the embedding its MLP reads) does not decay; the MLP's weight matrices do.
    no_decay=("*prompt_encoder.*.embedding.weight",),
)
