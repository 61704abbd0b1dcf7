"""Across models: does the ranking of methods on one model hold on another? (compare's `models: [...]`)

For each pair of models, over the labels both ran, Kendall's tau (Kendall 1938, tau-a): the share of
label pairs the two leaderboards order the same way less the share they order the opposite way, from
1 (the same order) to -1 (reversed); a pair tied on either model counts 0.

Its interval comes from each model's own simultaneous intervals (top_group.py), not from a bootstrap
of tau. On one model, a pair of labels whose difference the intervals separate has a known order; a
pair they cannot separate could fall either way, or be tied. The interval is the range of tau over
every way the unknown orders could fall:

    [(K - U) / P, (K + U) / P]

with K = (same order - opposite order) among the pairs known on both models, U = the pairs unknown on
either, P = all pairs. On the event that every model's intervals hold at once, each known order is the
true one, so the true tau lies in the range; each model's family is run at level 1 - 0.05 / M
(Bonferroni over the M models), so that event has probability at least 95%. A percentile bootstrap of
tau does not hold: the tau of noisy means is pulled toward 0 where methods are close, and its interval
then misses the truth (bench/cross_model_tau.py measures both). The price is width: with few test
examples or close methods the range is wide, which is the honest answer ("the data do not say").

"True" means what the families cover: with 3+ seeds, the expected score over test examples and
training seeds; with fewer, over test examples for the runs that were trained (said out loud).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from peftlab.report.aggregate import Comparison, Entry, family_inputs
from peftlab.report.top_group import LEVEL, SEEDS_FOR_TRAINING_NOISE, Family, top_group
from peftlab.tasks.metrics import better_sign


@dataclass
class Agreement:
    """Kendall's tau of two models' leaderboards over the labels both ran, with its interval."""

    first: str
    second: str
    tau: float
    low: float
    high: float
    known: int  # label pairs whose order the intervals settle on both models
    pairs: int


@dataclass
class CrossModel:
    """One task's labels across the models that ran it."""

    task: str
    metric: str
    models: list[str]
    labels: list[str]  # run on every model, in the first model's leaderboard order
    means: dict[str, dict[str, float]]  # label -> model -> leaderboard mean
    ranks: dict[str, dict[str, float]]  # label -> model -> rank (1 = best; ties share their mean rank)
    standing: dict[str, dict[str, str]]  # label -> model -> its verdict word on that model's leaderboard
    top: dict[str, list[str]]  # model -> its top group among `labels`
    agreements: list[Agreement]
    missing: dict[str, list[str]] = field(default_factory=dict)  # label not on every model -> models it ran on
    level: float = LEVEL
    covers_training_noise: bool = True


def cross_models(comparisons: list[Comparison]) -> list[CrossModel]:
    """One CrossModel per task and metric that two or more models ran."""
    groups: dict[tuple, list[Comparison]] = {}
    for comp in comparisons:
        groups.setdefault((comp.task, comp.metric, comp.higher_is_better), []).append(comp)
    return [across(comps) for comps in groups.values() if len({c.model for c in comps}) > 1]


def across(comps: list[Comparison]) -> CrossModel:
    """The cross-model table of one task's comparisons (one per model)."""
    models = [c.model for c in comps]
    ran = {c.model: {e.label for e in c.entries} for c in comps}
    labels = [e.label for e in comps[0].entries if all(e.label in ran[m] for m in models)]
    every = list(dict.fromkeys(e.label for c in comps for e in c.entries))
    missing = {lb: [m for m in models if lb in ran[m]] for lb in every if lb not in labels}
    level = 1 - (1 - LEVEL) / len(comps)
    families = {c.model: family_of(c, labels, level) for c in comps}
    sign = better_sign(comps[0].higher_is_better)
    by_model = {c.model: {e.label: e for e in c.entries} for c in comps}
    means = {lb: {m: by_model[m][lb].mean for m in models} for lb in labels}
    ranks = {m: rankdata([-sign * means[lb][m] for lb in labels]) if labels else [] for m in models}
    agreements = [
        agreement(a, b, labels, means, families, sign) for a, b in itertools.combinations(models, 2) if len(labels) > 1
    ]
    return CrossModel(
        task=comps[0].task,
        metric=comps[0].metric,
        models=models,
        labels=labels,
        means=means,
        ranks={lb: {m: float(ranks[m][i]) for m in models} for i, lb in enumerate(labels)},
        standing={lb: {m: by_model[m][lb].tie.word for m in models} for lb in labels},
        top={m: [lb for lb in labels if by_model[m][lb].tie.in_top_group] for m in models},
        agreements=agreements,
        missing=missing,
        level=level,
        covers_training_noise=all(f.covers_training_noise for f in families.values() if f is not None),
    )


def family_of(comp: Comparison, labels: list[str], level: float) -> Family | None:
    """The simultaneous intervals of ``comp`` restricted to ``labels``, at ``level``; None with fewer
    than two labels."""
    wanted = set(labels)
    entries: list[Entry] = [e for e in comp.entries if e.label in wanted]  # still best first
    if len(entries) < 2:
        return None
    samples, seeds = family_inputs(entries)
    _, family = top_group(
        [e.label for e in entries], [e.mean for e in entries], samples, comp.higher_is_better, seeds, level=level
    )
    return family


def order(family: Family | None, a: str, b: str, sign: int) -> int | None:
    """+1 when the intervals put a ahead of b, -1 behind; None when they cannot tell (or have no data)."""
    if family is None or not family.separable(a, b):
        return None
    return 1 if sign * (family.points[a] - family.points[b]) > 0 else -1


def agreement(
    a: str, b: str, labels: list[str], means: dict, families: dict[str, Family | None], sign: int
) -> Agreement:
    """Kendall's tau-a of models a and b over ``labels`` and its interval (the module's docstring)."""
    pairs = list(itertools.combinations(labels, 2))
    point = known_sum = unknown = 0
    for x, y in pairs:
        point += int(np.sign(sign * (means[x][a] - means[y][a])) * np.sign(sign * (means[x][b] - means[y][b])))
        on_a, on_b = order(families[a], x, y, sign), order(families[b], x, y, sign)
        if on_a is None or on_b is None:
            unknown += 1
        else:
            known_sum += on_a * on_b
    n = len(pairs)
    return Agreement(a, b, point / n, (known_sum - unknown) / n, (known_sum + unknown) / n, n - unknown, n)


def seeds_note(cm: CrossModel) -> str:
    if cm.covers_training_noise:
        return ""
    return (
        f"With fewer than {SEEDS_FOR_TRAINING_NOISE} seeds the intervals cover test-set sampling only, not "
        "training noise: the orders they settle are those of the runs trained."
    )
