"""How many seeds and test examples would separate a top-group label from the best.

A tie says "not separable with this data", not "equal". For each label in the top group behind the
best, this module estimates, from the comparison's own per-example and seed variances, the number of
seeds that would separate a gap of the observed size at 80% power, at this test set's size and at a
larger one ("about 6 seeds at 64 test examples, or 3 seeds at 400"). No tool reports this; it is what
a user needs to decide whether to spend more compute or accept the tie.

The model (per label m, seed s, example i; a mean metric such as accuracy or ROUGE):
score = mu_m + a_i + c_mi + b_ms + e_msi, with a_i shared by every label (cancels in a paired
difference), c_mi the label's own per-example effect, b_ms the seed's shift of the whole run, e_msi
per-example seed noise. The difference of two labels' means over S seeds each and n examples has

    Var = v_c / n + v_b * (t_a + t_b) / S + v_e * (t_a + t_b) / (n * S)

(t = 1 for a label that trains, 0 for one that does not), estimated from the data:
v_e = the mean over examples of the across-seed variance; v_b = the variance of seed means less
v_e / n; v_c = the variance over examples of the two labels' per-example seed-mean difference less
v_e (1/S_a + 1/S_b). v_b and v_e are pooled over every label with two or more seeds, as the rule
pools them; with one seed everywhere, v_b cannot be measured: DEFAULT_SEED_SD (measured on a real
comparison by bench/tie_rule.py) stands in, and the line says so. The rule of top_group.py
separates when Δ > c_S·se, c_S the comparison's critical value widened to t at the smaller of the
examples' and the pooled seed estimate's degrees of freedom at S seeds (k (S - 1)); the power of
that test is a noncentral t's tail (``_power``), and the advice is the fewest seeds giving 80%.
bench/tie_rule.py checks the predicted power against simulation.

Corpus metrics (BLEU) are not means over examples: no advice is given for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from peftlab.report.student_t import t_matching_normal
from peftlab.report.ties import LabelSample, per_example_scores, seed_variances

# Seed-to-seed sd of a run's test score, measured on sql_demo (bench/tie_rule.py, RESULTS.md): used
# only when no label of the comparison has two seeds.
DEFAULT_SEED_SD = 0.03
MAX_SEEDS = 100
MIN_SEEDS = 3  # fewer seeds do not measure training noise (top_group.SEEDS_FOR_TRAINING_NOISE)


@dataclass
class Components:
    v_c: float  # per-example label effect of the pair (variance over examples of the difference)
    v_b: float  # one run's seed shift (variance of a label's score between seeds)
    v_e: float  # per-example seed noise
    trains: tuple[bool, bool]
    seed_measured: bool
    labels: int = 2  # labels in the family: the pooled seed estimate has labels x (S - 1) degrees of freedom

    def critical(self, c: float, seeds: int, examples: int) -> float:
        """c widened as top_group.widened does, for a pair at ``seeds`` seeds and ``examples`` examples: t at
        the smaller of the examples' and (where a label trains) the pooled seed estimate's degrees of freedom."""
        return t_matching_normal(c, _dof(self, seeds, examples))

    def variance(self, seeds: int, examples: int) -> float:
        t = sum(self.trains)
        return self.v_c / examples + t * self.v_b / seeds + t * self.v_e / (examples * seeds)


def pooled_seed_variances(samples: list[LabelSample | None]) -> tuple[float, float] | None:
    """(v_b, v_e) pooled over every label with two or more seeds (weighted by S - 1); None when none has."""
    xs = [x for s in samples if s is not None and (x := per_example_scores(s)) is not None and x.shape[0] >= 2]
    if not xs:
        return None
    found, dofs = [seed_variances(x) for x in xs], [x.shape[0] - 1 for x in xs]
    return tuple(float(np.average([f[i] for f in found], weights=dofs)) for i in (0, 1))


def components(
    best: LabelSample,
    other: LabelSample,
    trains: tuple[bool, bool],
    pooled: tuple[float, float] | None,
    labels: int = 2,
) -> Components | None:
    ids = sorted(set(best.ids) & set(other.ids))
    x, y = (
        per_example_scores(LabelSample(ids, best.take(ids), best.value)),
        per_example_scores(LabelSample(ids, other.take(ids), other.value)),
    )
    if x is None or y is None or len(ids) < 2:
        return None
    v_b, v_e = pooled or (DEFAULT_SEED_SD**2, 0.0)
    v_c = float((x.mean(axis=0) - y.mean(axis=0)).var(ddof=1)) - v_e * (1 / x.shape[0] + 1 / y.shape[0])
    return Components(max(0.0, v_c), v_b, v_e, trains, pooled is not None, labels)


def _dof(comp: Components, seeds: int, examples: int) -> float:
    seeded = any(comp.trains) and comp.v_b > 0 and seeds > 1
    return float(min([max(examples - 1, 1)] + ([comp.labels * (seeds - 1)] if seeded else [])))


def _power(delta: float, t_c: float, dof: float) -> float:
    """P(T > t_c) for a noncentral t with noncentrality ``delta``: Φ((δ - t_c) / sqrt(1 + t_c² / 2ν)), the
    usual normal approximation (Johnson, Kotz & Balakrishnan, Continuous Univariate Distributions 2, §31).
    With few degrees of freedom (3 seeds pooled over 2 labels: 4) the plain normal one, Φ(δ - t_c),
    misses the t's long right tail and predicted a third of the simulated power."""
    return 0.5 * math.erfc(-((delta - t_c) / math.sqrt(1 + t_c * t_c / (2 * dof))) / math.sqrt(2))


def seeds_needed(comp: Components, gap: float, critical: float, examples: int) -> int | None:
    """The fewest seeds (at least MIN_SEEDS when a label trains) that separate ``gap`` at 80% power
    with ``examples`` test examples; None when even MAX_SEEDS do not."""
    low = MIN_SEEDS if any(comp.trains) else 1
    for seeds in range(low, MAX_SEEDS + 1):
        if power(comp, gap, critical, seeds, examples) >= 0.8:
            return seeds
    return None


def larger_test_set(examples: int) -> int:
    return 400 if examples < 400 else 4 * examples


def power(comp: Components, gap: float, critical: float, seeds: int, examples: int) -> float:
    """Predicted chance that the rule separates a true ``gap`` (normal approximation)."""
    se = math.sqrt(comp.variance(seeds, examples))
    if se == 0:
        return 1.0 if gap > 0 else 0.0
    return _power(gap / se, comp.critical(critical, seeds, examples), _dof(comp, seeds, examples))


def advice(comp: Components, gap: float, critical: float, examples: int) -> str:
    """'about 6 seeds at 64 test examples, or 3 seeds at 400' for a gap of the observed size."""
    if gap <= 0:
        return "no gap to separate"
    parts = []
    for n in (examples, larger_test_set(examples)):
        seeds = seeds_needed(comp, gap, critical, n)
        many = f"over {MAX_SEEDS} seeds" if seeds is None else f"about {seeds} seed{'s' if seeds > 1 else ''}"
        parts.append(f"{many} at {n} test examples")
    text = f"{parts[0]}, or {parts[1]}"
    if any(comp.trains) and not comp.seed_measured:
        text += f" (seed noise not measured with one seed: sd {DEFAULT_SEED_SD} assumed)"
    return text
