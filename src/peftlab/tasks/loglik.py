"""Scoring by log-likelihood: classification with label words, multiple-choice QA.

Instead of generating freely and hoping the text matches an option, every candidate answer is
scored as a continuation of the prompt and the best one is picked, so every prediction is a valid
option. Formatting is exactly the training formatting (``Backbone.prompt_ids`` for the prompt, the
target tokens of ``Backbone.encode`` for the continuation), so a fine-tuned model is scored on the
sequences it was trained on.

    continuation_logprobs(bb, model, prompts, continuations) -> [[(sum log p, n tokens), ...], ...]
    classify(bb, model, prompts, label_words)                -> one label word per prompt (argmax of the sum)
    multiple_choice(bb, model, prompts, choices)             -> one index per prompt (argmax of the mean)
    pick_choice(scores_with_lengths)                         -> the index multiple_choice picks
"""

from __future__ import annotations

import torch
from torch import nn

from peftlab.models.backbone import IGNORE, Backbone


def continuation_ids(backbone: Backbone, continuation: str) -> list[int]:
    """The continuation's tokens as ``Backbone.encode`` makes a training target, minus the final EOS.

    Taken from ``encode`` itself (empty prompt, whose tokens are all masked for decoder-only models)
    so scoring cannot drift from training. The final EOS (``</s>`` for T5, the model's EOS for
    decoder-only models) is dropped: we score the label word/option itself. P(EOS | option) measures
    "and then the answer stops", which is not a property of the option and, for a model never
    trained on this format (zero-shot), is mostly noise that would be added to every option; and a
    seq2seq and a causal model then score the same thing. (Caveat: without EOS, an option that is a
    token-prefix of another, e.g. "no" / "not", gets no penalty for stopping early.)
    """
    labels = backbone.encode("", continuation, max_target_tokens=10**9)["labels"]
    ids = [t for t in labels if t != IGNORE]
    if ids and ids[-1] == backbone.tokenizer.eos_token_id:
        ids = ids[:-1]
    return ids


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def continuation_logprobs(
    backbone: Backbone,
    model: nn.Module,
    prompts: list[str],
    continuations: list[list[str]],
    batch_size: int = 16,
    max_source_tokens: int = 512,
) -> list[list[tuple[float, int]]]:
    """For each prompt and each of its continuations: (summed log-probability of the continuation's
    tokens given the prompt, number of continuation tokens). ``model`` may be plain or peft-wrapped."""
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} lists of continuations")
    src = [backbone.prompt_ids(p, max_source_tokens) for p in prompts]  # once per prompt (truncation count)
    cache: dict[str, list[int]] = {}
    rows: list[tuple[int, int, list[int]]] = []  # (prompt index, continuation index, continuation ids)
    for i, conts in enumerate(continuations):
        for j, c in enumerate(conts):
            if c not in cache:
                cache[c] = continuation_ids(backbone, c)
            rows.append((i, j, cache[c]))
    out: list[list[tuple[float, int] | None]] = [[None] * len(c) for c in continuations]
    # Longest first: little padding per batch, and an out-of-memory error shows in the first batch.
    order = sorted(range(len(rows)), key=lambda r: -(len(src[rows[r][0]]) + len(rows[r][2])))
    pad = backbone.tokenizer.pad_token_id
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = [rows[r] for r in order[start : start + batch_size]]
            if backbone.is_seq2seq:
                scores = _seq2seq_batch(model, [src[i] for i, _, _ in batch], [c for _, _, c in batch], pad, device)
            else:
                scores = _causal_batch(model, [src[i] for i, _, _ in batch], [c for _, _, c in batch], pad, device)
            for (i, j, cont), s in zip(batch, scores):
                out[i][j] = (s, len(cont))
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def _causal_batch(model, srcs: list[list[int]], conts: list[list[int]], pad: int, device) -> list[float]:
    """One right-padded row prompt+continuation per candidate; the log-prob of token t is read from
    the logits at t-1. Right padding keeps every real token at the position it has alone (and in
    training, whose collate right-pads too), also with a soft prompt prepended by peft."""
    seqs = [s + c for s, c in zip(srcs, conts)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    target = torch.zeros((len(seqs), width), dtype=torch.bool)  # continuation positions
    for r, (s, c) in enumerate(zip(srcs, conts)):
        ids[r, : len(s) + len(c)] = torch.tensor(s + c, dtype=torch.long)
        mask[r, : len(s) + len(c)] = 1
        target[r, len(s) : len(s) + len(c)] = True
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    logits = logits[:, -width:].float()  # prompt tuning prepends virtual tokens' logits: drop them
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1)
    return (logp * target[:, 1:].to(device)).sum(-1).tolist()


def _seq2seq_batch(model, srcs: list[list[int]], conts: list[list[int]], pad: int, device) -> list[float]:
    """Encoder input = prompt (right-padded), labels = continuation (padded with -100); the model
    builds the decoder inputs by shifting the labels right, as in training."""
    width = max(len(s) for s in srcs)
    lwidth = max(1, max(len(c) for c in conts))  # an empty continuation still needs one decoder step
    ids = torch.full((len(srcs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(srcs), width), dtype=torch.long)
    labels = torch.full((len(srcs), lwidth), IGNORE, dtype=torch.long)
    for r, (s, c) in enumerate(zip(srcs, conts)):
        ids[r, : len(s)], mask[r, : len(s)] = torch.tensor(s, dtype=torch.long), 1
        labels[r, : len(c)] = torch.tensor(c, dtype=torch.long)
    labels = labels.to(device)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels).logits.float()
    keep = labels != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (logp * keep).sum(-1).tolist()


def pick_choice(scores_with_lengths: list[tuple[float, int]]) -> int:
    """Index of the best option by length-normalised log-likelihood (sum / number of tokens), so a
    long option is not penalised for having more tokens. Ties go to the first option."""
    means = [s / max(n, 1) for s, n in scores_with_lengths]
    return max(range(len(means)), key=lambda k: (means[k], -k))


def classify(
    backbone: Backbone,
    model: nn.Module,
    prompts: list[str],
    label_words: list[str],
    batch_size: int = 16,
    max_source_tokens: int = 512,
) -> list[str]:
    """The label word with the highest summed log-probability, per prompt (always one of label_words)."""
    if not label_words:
        raise ValueError("classify needs at least one label word")
    scores = continuation_logprobs(
        backbone,
        model,
        prompts,
        [list(label_words)] * len(prompts),
        batch_size=batch_size,
        max_source_tokens=max_source_tokens,
    )
    return [label_words[max(range(len(row)), key=lambda k: (row[k][0], -k))] for row in scores]


def multiple_choice(
    backbone: Backbone,
    model: nn.Module,
    prompts: list[str],
    choices: list[list[str]],
    batch_size: int = 16,
    max_source_tokens: int = 512,
) -> list[int]:
    """Per prompt, the index of its best choice by length-normalised log-likelihood (``pick_choice``)."""
    if any(not c for c in choices):
        raise ValueError("every prompt needs at least one choice")
    scores = continuation_logprobs(
        backbone, model, prompts, choices, batch_size=batch_size, max_source_tokens=max_source_tokens
    )
    return [pick_choice(row) for row in scores]
