"""Every option of a prompt scored from one run of the prompt: its KV cache, shared by the options.

Log-likelihood scoring (tasks/loglik.py) asks how likely each of a prompt's k options is as its
continuation. Scored as separate rows, prompt + option each, the prompt (most of the tokens: a
CommonsenseQA question is ~60 tokens, an option ~3) runs k times. Here a decoder-only model runs the
prompt once, through the prefill of peftlab's own decoder (models/decode.py, so a soft prompt or a
prefix is placed exactly as in generation), repeats each prompt's cache rows for its options, and
runs only the options' tokens on top (``Causal.option_logprobs``, models/causal.py):

    log p(option) = log p(o_1 | prompt)              <- the prefill's last logits
                  + sum_t log p(o_t | prompt, o_<t)   <- a forward of o_1..o_{n-1} over the cache

The options' forwards run in groups of similar length (one-token options in none): padded to the
longest option of a batch, CommonsenseQA's (1-8 tokens, 2.2 on average) were three quarters padding.

The prompt is left-padded (as for generation) and its positions count from its first real token,
so every token sits where it sits when the prompt and option run as one unpadded row; the scores
equal that row's within float rounding (tests/tasks/test_loglik.py). Not used where left padding
changes what a row sees (prefix tuning on local or sliding-window attention: decode.py's
``prefix_needs_equal_lengths``); those keep one row per pair.

An encoder-decoder runs the encoder once per prompt (right-padded, as in training) and the decoder
once per option over a copy of that encoding: the decoder reads [start] + option[:-1] and is scored
on the option, as training scores a target (``Seq2Seq.option_logprobs``, models/seq2seq.py), in the
same groups of similar length.
"""

from __future__ import annotations

import torch
from torch import nn

from peftlab.models.decode import prefix_needs_equal_lengths


def shares_prompt(model: nn.Module) -> bool:
    """Whether ``shared_prompt_logprobs`` applies to this model (see the module's docstring)."""
    return not prefix_needs_equal_lengths(model)


@torch.no_grad()
def shared_prompt_logprobs(
    backbone, model: nn.Module, sources: list[list[int]], options: list[list[list[int]]]
) -> list[list[float]]:
    """Summed log-probability of each prompt's options given the prompt (token ids in, floats out)."""
    ids, mask = backbone.pad_prompts(sources)  # padded on the side the kind generates from, on the model's device
    scores = backbone.kind.option_logprobs(model, ids, mask, options, backbone.tokenizer.pad_token_id)
    out, k = [], 0
    for opts in options:
        out.append(scores[k : k + len(opts)].tolist())
        k += len(opts)
    return out
