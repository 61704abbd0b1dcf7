"""Decoding that peftlab owns: greedy search and beam search over the model's forward and its KV cache.

Why not ``model.generate``: for prompt- and prefix-tuned models it runs through peft's
``prepare_inputs_for_generation``, which depends on how the installed transformers names its inputs.
transformers 5.24 renamed ``past_key_values`` to ``cache`` in every forward, output and generation
kwarg (the old name is accepted until 5.40); peft 0.21.2 still looks the cache up under the old
name, finds none after the first step, and so never cuts the input to the newest token: each step
after the first runs the whole sequence again on top of the cache, and prompt- and prefix-tuned
generation silently stopped matching greedy decoding. This loop depends only on
``forward(input_ids | inputs_embeds, attention_mask, position_ids, cache)``, the interface the
models train through, and on peft's ``get_prompt`` for the soft prompt or the prefix.

It also decodes every method the same way, which an honest comparison needs:
- the soft prompt of prompt tuning goes *after* the left padding, next to the real tokens, and
  positions count from the first real token, so a row of a padded batch sees exactly what it saw
  in training (peft puts the prompt before the padding, so peftlab had to batch those models by
  equal length only);
- pure argmax or beam scores of the log-softmax: no repetition penalty or other processors from a
  checkpoint's ``generation_config``, which would differ between models, not between methods.

Beam search keeps the semantics of transformers' default beam search (length_penalty 1.0 over the
generated length, early_stopping=False), so a plain model gives the same beams as ``generate``;
tests/models/test_decode.py checks both searches against references.

The loop is the same for both model kinds; each kind's decoder (``ModelKind.decoder``: CausalDecoder in
models/causal.py, Seq2SeqDecoder in models/seq2seq.py) owns prefill, step and the cache, over
models/forward.py's ``Forward``.
"""

from __future__ import annotations

import torch
from torch import nn

from peftlab.models.forward import core_model, prompt_learning
from peftlab.models.kind import Decoder, kind_of, kind_of_config

NEG_INF = float("-inf")


def prefix_needs_equal_lengths(model: nn.Module) -> bool:
    """True when a padded batch would change what a prefix-tuned row sees (``padding_moves_prefix`` of
    the model's kind: left padding between the prefix and the tokens, under local or sliding-window
    attention). Such models are batched by equal prompt length instead (exact, a little slower)."""
    config = core_model(model).config
    return prompt_learning(model) == "prefix" and kind_of_config(config).padding_moves_prefix(config)


def decoder_for(model: nn.Module, share_prefix: bool = True, room: int = 0) -> Decoder:
    """The decoder of the model's kind: CausalDecoder (models/causal.py) or Seq2SeqDecoder (models/seq2seq.py).
    ``share_prefix``: prefill the batch's shared prompt prefix once (models/shared_prefix.py); ``room``:
    KV cache positions reserved for the tokens to come (models/kv_room.py)."""
    return kind_of(model).decoder(model, share_prefix, room)


def _until_eos(rows: torch.Tensor, eos: torch.Tensor) -> list[list[int]]:
    """Each row's tokens up to and including its first end-of-sequence token."""
    out, stop = [], set(eos.tolist())
    for row in rows.tolist():
        ends = [i for i, t in enumerate(row) if t in stop]
        out.append(row[: ends[0] + 1] if ends else row)
    return out


@torch.no_grad()
def greedy(
    model: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | list[int],
    pad_token_id: int,
    share_prefix: bool = True,
) -> list[list[int]]:
    """New token ids of each row (up to and including EOS): argmax at every step.

    Rows that have ended leave the batch (``Decoder.keep_rows``) once an eighth of it has: a step then
    computes only the rows still running (leaving costs a copy of the cache, so not row by row). Every
    row's arithmetic is its own, so the tokens are the same; the KV cache has room reserved for the new
    tokens (models/kv_room.py)."""
    eos = torch.tensor(eos_token_id, device=ids.device).reshape(-1)
    decoder = decoder_for(model, share_prefix, room=max_new_tokens)
    logits = decoder.prefill(ids, mask)
    tokens = torch.full((ids.shape[0], max_new_tokens), pad_token_id, dtype=torch.long, device=ids.device)
    running = torch.arange(ids.shape[0], device=ids.device)  # batch row of each row still decoding
    ended = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for t in range(max_new_tokens):
        token = torch.where(ended, pad_token_id, logits.argmax(-1))
        tokens[running, t] = token
        ended |= torch.isin(token, eos)
        if ended.all() or t == max_new_tokens - 1:
            break
        if int(ended.sum()) >= max(1, len(running) // 8):
            keep = (~ended).nonzero().squeeze(1)
            decoder.keep_rows(keep)
            running, token, ended = running[keep], token[keep], ended[keep]
        logits = decoder.step(token)
    return _until_eos(tokens, eos)
