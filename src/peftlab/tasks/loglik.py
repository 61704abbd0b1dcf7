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
    pairs_to_score(...)                                      -> how many (prompt, option) pairs they score
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from peftlab.config import DEFAULT_KV_CACHE_GB
from peftlab.models.backbone import IGNORE, Backbone
from peftlab.models.decode import prefix_needs_equal_lengths
from peftlab.models.forward import core_model
from peftlab.models.kv_budget import GB, batches, kv_bytes_per_token
from peftlab.models.option_scores import shared_prompt_logprobs, shares_prompt
from peftlab.tasks.calibration import calibrated_choice, calibrated_label, label_prior


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
    progress: Callable[[int], None] = lambda n: None,
    share_prompt: bool | None = None,
    kv_cache_gb: float | None = DEFAULT_KV_CACHE_GB,
) -> list[list[tuple[float, int]]]:
    """For each prompt and each of its continuations: (summed log-probability of the continuation's
    tokens given the prompt, number of continuation tokens). ``model`` may be plain or peft-wrapped.
    ``progress(n)`` is called after each batch with the number of (prompt, continuation) pairs scored.

    ``share_prompt`` (default: where it applies, models/option_scores.py): run each prompt once and
    its continuations on its KV cache, ``batch_size`` prompts per batch at most, fewer where their
    repeated cache would pass ``kv_cache_gb`` (null: no cap); otherwise one row per (prompt,
    continuation) pair, ``batch_size`` pairs per batch."""
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} lists of continuations")
    src = [backbone.prompt_ids(p, max_source_tokens) for p in prompts]  # once per prompt (truncation count)
    ids = {c: continuation_ids(backbone, c) for c in {c for cs in continuations for c in cs}}  # once per text
    conts = [[ids[c] for c in cs] for cs in continuations]
    share = shares_prompt(model) if share_prompt is None else share_prompt
    was_training = model.training
    model.eval()
    try:
        if share:
            return _by_prompt(backbone, model, src, conts, batch_size, progress, kv_cache_gb)
        return _by_pair(backbone, model, src, conts, batch_size, progress)
    finally:
        model.train(was_training)


def _by_pair(backbone, model, src, conts, batch_size, progress) -> list[list[tuple[float, int]]]:
    """One row per (prompt, continuation) pair, in length-sorted batches of ``batch_size`` rows."""
    rows = [(i, j, c) for i, cs in enumerate(conts) for j, c in enumerate(cs)]
    out: list[list] = [[None] * len(cs) for cs in conts]
    # Longest first: little padding per batch, and an out-of-memory error shows in the first batch.
    order = sorted(range(len(rows)), key=lambda r: -(len(src[rows[r][0]]) + len(rows[r][2])))
    pad = backbone.tokenizer.pad_token_id
    device = _device(model)
    for start in range(0, len(order), batch_size):
        batch = [rows[r] for r in order[start : start + batch_size]]
        with backbone.numerics():
            scores = backbone.kind.continuation_logprobs(
                model, [src[i] for i, _, _ in batch], [c for _, _, c in batch], pad, device
            )
        for (i, j, cont), s in zip(batch, scores):
            out[i][j] = (s, len(cont))
        progress(len(batch))
    return out


def _by_prompt(backbone, model, src, conts, batch_size, progress, kv_cache_gb) -> list[list[tuple[float, int]]]:
    """Each prompt once, its continuations on its cache. A batch holds up to ``batch_size`` prompts
    (longest first), as generation's does, and fewer where the cache repeated for their continuations
    would pass ``kv_cache_gb``: the prefill's matrices grow with the prompts per batch (CommonsenseQA's
    60 test questions took 6.2 s in batches of 12 prompts, 5.1 s in one batch: bench/RESULTS.md)."""
    out: list[list] = [[] for _ in conts]
    order = sorted(range(len(src)), key=lambda i: -len(src[i]))  # longest first, as above
    per_token = kv_bytes_per_token(core_model(model).config)
    widest = max((len(c) for cs in conts for c in cs), default=0)
    options = max((len(cs) for cs in conts), default=1)
    groups = batches(
        order,
        [len(s) for s in src],
        batch_size,
        equal_lengths=prefix_needs_equal_lengths(model),  # as generation batches them (models/decode.py)
        row_bytes=lambda length: options * (length + widest) * per_token,
        budget=None if kv_cache_gb is None else kv_cache_gb * GB,
    )
    for batch in groups:
        with backbone.numerics():
            scores = shared_prompt_logprobs(backbone, model, [src[b] for b in batch], [conts[b] for b in batch])
        for b, row in zip(batch, scores):
            out[b] = [(s, len(c)) for s, c in zip(row, conts[b])]
        progress(sum(len(conts[b]) for b in batch))
    return out


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
    content_free: list[str] | None = None,
    progress: Callable[[int], None] = lambda n: None,
    kv_cache_gb: float | None = DEFAULT_KV_CACHE_GB,
) -> list[str]:
    """The label word with the highest summed log-probability, per prompt (always one of label_words);
    with ``content_free`` prompts, contextually calibrated (tasks/calibration.py)."""
    if not label_words:
        raise ValueError("classify needs at least one label word")
    scores = continuation_logprobs(
        backbone,
        model,
        prompts,
        [list(label_words)] * len(prompts),
        batch_size=batch_size,
        max_source_tokens=max_source_tokens,
        progress=progress,
        kv_cache_gb=kv_cache_gb,
    )
    if content_free:
        cf = continuation_logprobs(
            backbone,
            model,
            content_free,
            [list(label_words)] * len(content_free),
            batch_size,
            progress=progress,
            kv_cache_gb=kv_cache_gb,
        )
        prior = label_prior(cf)
        return [label_words[calibrated_label(row, prior)] for row in scores]
    return [label_words[max(range(len(row)), key=lambda k: (row[k][0], -k))] for row in scores]


def multiple_choice(
    backbone: Backbone,
    model: nn.Module,
    prompts: list[str],
    choices: list[list[str]],
    batch_size: int = 16,
    max_source_tokens: int = 512,
    content_free: list[str] | None = None,
    progress: Callable[[int], None] = lambda n: None,
    kv_cache_gb: float | None = DEFAULT_KV_CACHE_GB,
) -> list[int]:
    """Per prompt, the index of its best choice by length-normalised log-likelihood (``pick_choice``);
    with ``content_free`` prompts, contextually calibrated (tasks/calibration.py)."""
    if any(not c for c in choices):
        raise ValueError("every prompt needs at least one choice")
    kwargs = {"batch_size": batch_size, "progress": progress, "kv_cache_gb": kv_cache_gb}
    scores = continuation_logprobs(backbone, model, prompts, choices, max_source_tokens=max_source_tokens, **kwargs)
    if content_free:
        options = sorted({o for c in choices for o in c})
        cf = continuation_logprobs(backbone, model, content_free, [options] * len(content_free), **kwargs)
        prior = {o: sum(row[j][0] for row in cf) / len(cf) for j, o in enumerate(options)}
        return [calibrated_choice(row, [prior[o] for o in c]) for row, c in zip(scores, choices)]
    return [pick_choice(row) for row in scores]


def pairs_to_score(prompts: int, options: list[list[str]], content_free: list[str] | None) -> int:
    """How many (prompt, option) pairs ``classify`` / ``multiple_choice`` score: a progress bar's total.

    ``options``: every prompt's options (classify: the label words for each prompt). Content-free
    prompts are scored against every distinct option, as the calibration does."""
    distinct = len({o for opts in options for o in opts})
    return sum(len(opts) for opts in options[:prompts]) + (len(content_free) * distinct if content_free else 0)
