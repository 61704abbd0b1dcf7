"""Every option of a prompt scored from one run of the prompt: its KV cache, shared by the options.

Log-likelihood scoring (tasks/loglik.py) asks how likely each of a prompt's k options is as its
continuation. Scored as separate rows, prompt + option each, the prompt (most of the tokens: a
CommonsenseQA question is ~60 tokens, an option ~3) runs k times. Here a decoder-only model runs the
prompt once, through the prefill of peftlab's own decoder (models/decode.py, so a soft prompt or a
prefix is placed exactly as in generation), repeats each prompt's cache rows for its options, and
runs only the options' tokens on top:

    log p(option) = log p(o_1 | prompt)              <- the prefill's last logits
                  + sum_t log p(o_t | prompt, o_<t)   <- one forward of o_1..o_{n-1} over the cache

The prompt is left-padded (as for generation) and its positions count from its first real token,
so every token sits where it sits when the prompt and option run as one unpadded row; the scores
equal that row's within float rounding (tests/tasks/test_loglik.py). Not used where left padding
changes what a row sees (prefix tuning on local or sliding-window attention: decode.py's
``prefix_needs_equal_lengths``); those keep one row per pair.

An encoder-decoder runs the encoder once per prompt (right-padded, as in training) and the decoder
once per option over a copy of that encoding: the decoder reads [start] + option[:-1] and is scored
on the option, as training scores a target.
"""

from __future__ import annotations

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.models.decode import CausalDecoder, Seq2SeqDecoder, prefix_needs_equal_lengths
from peftlab.models.kind import IGNORE, right_pad


def shares_prompt(model: nn.Module) -> bool:
    """Whether ``shared_prompt_logprobs`` applies to this model (see the module's docstring)."""
    return not prefix_needs_equal_lengths(model)


@torch.no_grad()
def shared_prompt_logprobs(
    backbone, model: nn.Module, sources: list[list[int]], options: list[list[list[int]]]
) -> list[list[float]]:
    """Summed log-probability of each prompt's options given the prompt (token ids in, floats out)."""
    scores = (_seq2seq if backbone.is_seq2seq else _causal)(backbone, model, sources, options)
    out, k = [], 0
    for opts in options:
        out.append(scores[k : k + len(opts)].tolist())
        k += len(opts)
    return out


def _seq2seq(backbone, model: nn.Module, sources: list[list[int]], options: list[list[list[int]]]) -> torch.Tensor:
    ids, mask = backbone.pad_prompts(sources)  # right-padded, on the model's device
    device = ids.device
    decoder = Seq2SeqDecoder(model)
    decoder.encode(ids, mask)
    flat = [o for opts in options for o in opts]
    decoder.repeat_encoded(torch.tensor([i for i, opts in enumerate(options) for _ in opts], device=device))
    start = decoder.fwd.core.config.decoder_start_token_id
    if start is None:
        raise PeftlabError("scoring: the model's config has no decoder_start_token_id")
    width = max(1, max((len(o) for o in flat), default=0))  # an empty option still needs one decoder step
    feed = right_pad([[start, *o[:-1]] for o in flat], backbone.tokenizer.pad_token_id, width)[0].to(device)
    labels = right_pad(flat, IGNORE, width)[0].to(device)
    inputs = {"encoder_outputs": decoder.encoder_outputs, "attention_mask": decoder.mask, "decoder_input_ids": feed}
    logits = decoder.fwd.all_logits(decoder.cache, **inputs)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (logp * (labels != IGNORE)).sum(-1)


def _causal(backbone, model: nn.Module, sources: list[list[int]], options: list[list[list[int]]]) -> torch.Tensor:
    ids, mask = backbone.pad_prompts(sources)  # left-padded, on the model's device
    device = ids.device
    decoder = CausalDecoder(model)
    first = torch.log_softmax(decoder.prefill(ids, mask), dim=-1)  # (prompts, vocab): each option's first token
    flat = [o for opts in options for o in opts]
    rows = torch.tensor([i for i, opts in enumerate(options) for _ in opts], device=device)
    starts = torch.tensor([o[0] if o else 0 for o in flat], device=device)
    scores = first[rows, starts] * torch.tensor([bool(o) for o in flat], device=device)
    width = max(len(o) for o in flat) - 1 if flat else 0
    if width > 0:  # the rest of each option, on top of its prompt's cache
        decoder.select(rows)
        pad = backbone.tokenizer.pad_token_id
        feed, feed_mask = right_pad([o[:-1] for o in flat], pad, width)
        targets, target_mask = right_pad([o[1:] for o in flat], 0, width)
        positions = decoder.next_position + torch.arange(width, device=device)
        logits = decoder.fwd.all_logits(
            decoder.cache,
            input_ids=feed.to(device),
            attention_mask=torch.cat([decoder.mask, feed_mask.to(device)], dim=1),
            position_ids=positions,
        )
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.to(device)[..., None]).squeeze(-1)
        scores = scores + (logp * target_mask.to(device)).sum(-1)
    return scores
