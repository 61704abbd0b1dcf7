"""Contextual calibration (Zhao et al. 2021, "Calibrate Before Use: Improving Few-Shot Performance of
Language Models"): divide each answer's probability by its probability given a content-free input.

A zero-shot model's log-likelihood scores carry its prior over the answers: SmolLM2 answers
"surprise" to 357 of 500 emotion questions, so zero-shot accuracy (0.094) is a baseline too weak to
measure methods against. The prior is estimated by scoring the answers after the task's prompt with
every template field replaced by a content-free token ("N/A", "", "[MASK]"; with the same k-shot
demonstrations), and taken out:

    classify          the label probabilities, renormalised over the label set and averaged over the
                      content-free inputs, give p_cf; the pick is argmax_k log p(k | x) - log p_cf(k)
                      (the paper's diagonal W = diag(p_cf)^-1, b = 0).
    multiple_choice   the options differ per question, so each option's own content-free score is
                      taken out: argmax of (sum log p(o | x) - mean_cf sum log p(o | cf)) / tokens(o),
                      the length-normalised score ``pick_choice`` uses, calibrated the same way.
"""

from __future__ import annotations

import math
import string

CONTENT_FREE = ("N/A", "", "[MASK]")


def content_free_prompts(template: str, demonstrations: str = "") -> list[str]:
    """The task's prompt with every field replaced by each content-free token."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    return [demonstrations + template.format(**dict.fromkeys(fields, token)) for token in CONTENT_FREE]


def label_prior(scores: list[list[tuple[float, int]]]) -> list[float]:
    """log p_cf per label: softmax over the labels of each content-free input's summed log-probabilities,
    averaged over the inputs."""
    probs = []
    for row in scores:
        top = max(s for s, _ in row)
        weights = [math.exp(s - top) for s, _ in row]
        total = sum(weights)
        probs.append([w / total for w in weights])
    return [math.log(max(sum(col) / len(col), 1e-30)) for col in zip(*probs)]


def calibrated_label(row: list[tuple[float, int]], prior: list[float]) -> int:
    """Index of the label with the highest calibrated score; ties go to the first label."""
    return max(range(len(row)), key=lambda k: (row[k][0] - prior[k], -k))


def calibrated_choice(row: list[tuple[float, int]], prior: list[float]) -> int:
    """Index of the option with the highest calibrated, length-normalised score."""
    means = [(s - p) / max(n, 1) for (s, n), p in zip(row, prior)]
    return max(range(len(means)), key=lambda k: (means[k], -k))
