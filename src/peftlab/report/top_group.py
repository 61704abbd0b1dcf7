"""The top group: every label the data cannot separate from the best, with the error controlled over
the whole family of k labels, not one pair at a time.

Testing each label against the best on its own (a 95% interval per pair) calls some label "worse" by
chance almost surely once there are many: with 16 truly equal methods and one seed, the old
per-pair rule did so in about 3 comparisons of 4. And the best is itself picked as the highest of k
noisy means, so it is flattered. peftlab's rule is the single-step max-t procedure of Westfall &
Young (1993, *Resampling-Based Multiple Testing*, §2.6) applied to every pair of labels, read as a
comparison with the best (Hsu 1996, *Multiple Comparisons*, ch. 4): simultaneous intervals that
hold for all pairs at once, whichever label turns out to have the highest mean.

1. Test-set noise, paired: RESAMPLES times (fixed seed), draw test examples with replacement,
   one draw shared by every label (matched by id: easy examples are easy for every method), and
   recompute each label's score as the leaderboard computes it, the mean over its seeds (BLEU at
   corpus level, report/ties.py).
2. Training noise: each resample adds to each trained label a normal shift with the variance of its
   mean over S seeds, v_b / S. v_b, the seed-to-seed variance of one run's score, is measured from
   the seeds (the variance of the seed means less the per-example noise the example draw already
   carries) and pooled over every label with two or more seeds, as a one-way analysis of variance
   pools it. Each label's own estimate from 3 seeds is too rough to use alone: among 16 labels
   some look steady by luck and were then separated by luck (a family-wise error of 0.23 in
   bench/tie_rule.py, against 0.05 pooled); and resampling 3 seeds shrinks their variance and has
   10 distinct draws. The price: a method much noisier than the others is under-covered (each
   label's own seed sd is in leaderboard.json to check). With no label at 2+ seeds, v_b is
   unknown and taken as 0, which the leaderboard says out loud (below).
3. For every pair (i, j): se_ij, the standard deviation over resamples of score_i - score_j. The
   critical value c is the 95th percentile over resamples of the largest standardised error of any
   pair, max_ij |(d*_ij - d_ij) / se_ij|. With 2 labels c is about 1.96; with 16, about 3.3.
4. A bootstrap does not see the uncertainty of its own se, and at the far tail a family needs
   (each pair near the 0.0003 level with 16 labels) that matters where the se rests on few degrees
   of freedom. So each pair's c is widened to the Student t value with the same tail, at the
   smaller of its parts' degrees of freedom: the examples' (n - 1) and the pooled seed estimate's
   (the sum of S - 1 over labels; Welch's conservative bound, see ``widened``): c_ij.
5. A label's difference to the best, Δ (oriented: positive means the best is better), gets the
   interval Δ ± c_ij·se. The label is behind when the interval lies above 0; else it is in the top
   group. On the event (probability 95%) that every pair's error is within its bound at once, no
   label whose true score equals the best's is called behind: the family-wise error is at most 5%.

bench/tie_rule.py checks this by simulation (k = 2, 8, 16 equal labels, 1 and 3 seeds, example
correlation and seed noise measured on a real comparison) and measures its power.

One seed covers the test set only: a run's training noise is invisible with one run per label, so
with fewer than SEEDS_FOR_TRAINING_NOISE seeds a label outside the top group is "behind (one seed)",
not "worse". Labels that do not train (zero-shot) have no training noise and count as exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from peftlab.report.student_t import t_matching_normal
from peftlab.report.ties import LabelSample, multiplicities, per_example_scores, seed_variances
from peftlab.tasks.metrics import better_sign

RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
SEEDS_FOR_TRAINING_NOISE = 3
BASIS = "simultaneous bootstrap over seeds and examples"
NO_DATA = "no per-example scores"

TIE_RULE = (
    "Top group: the labels the data cannot separate from the best. A paired bootstrap "
    f"({RESAMPLES} resamples with a fixed seed: test examples shared by all labels by id, each label's seeds "
    "drawn on its own, the task metric recomputed as the leaderboard does, BLEU at corpus level) gives "
    "simultaneous 95% intervals (CI) of every label's difference to the best: Δ ± c·se, where c is the 95th "
    "percentile of the largest standardised error over all pairs of labels (single-step max-t, Westfall & "
    "Young 1993). Over the whole leaderboard, the chance that any label equal to the best is shown behind it "
    "is at most 5%; a label is behind when its interval lies above 0."
)


@dataclass
class Verdict:
    verdict: str  # "best", "tie" (top group), "worse", "behind" (outside the top group, < 3 seeds), "undecided"
    basis: str  # BASIS, NO_DATA or "" (the best)
    delta: float | None = None  # how far behind the best (>= 0 means behind), in metric units
    ci: tuple[float, float] | None = None  # simultaneous 95% interval of that difference
    se: float | None = None  # bootstrap standard error of the difference
    seeds: int | None = None  # the fewest seeds of the pair's trained labels (None: neither trains)
    advice: str | None = None  # sample-size advice for a top-group label behind the best (sample_size.py)

    @property
    def in_top_group(self) -> bool:
        return self.verdict in ("best", "tie")

    @property
    def word(self) -> str:
        """How the verdict reads: 'behind (one seed)' says that training noise was not measured."""
        if self.verdict == "behind":
            return f"behind ({'one seed' if self.seeds == 1 else f'{self.seeds} seeds'})"
        return {"best": "best", "tie": "top group", "worse": "worse", "undecided": "?"}[self.verdict]


@dataclass
class Family:
    """What the rule rested on for one comparison."""

    labels: int  # labels with per-example data (the family the error is controlled over)
    critical: float | None  # c; None with fewer than two such labels
    examples: int  # test examples every label scored
    seeds: int | None  # the fewest seeds of any trained label (None: no label trains)
    points: dict[str, float] = field(default_factory=dict)  # label -> its score on all the data
    pair_se: dict[frozenset, float] = field(default_factory=dict)  # {a, b} -> se of a's difference to b
    pair_critical: dict[frozenset, float] = field(default_factory=dict)  # {a, b} -> c_ij (t-widened c)

    def separable(self, a: str, b: str) -> bool | None:
        """Whether the simultaneous intervals separate two labels (any pair, not only with the best: the
        critical value covers every pair at once); None when either has no per-example data."""
        if self.critical is None or a not in self.points or b not in self.points:
            return None
        pair = frozenset((a, b))
        return abs(self.points[a] - self.points[b]) > self.pair_critical[pair] * self.pair_se[pair]

    @property
    def covers_training_noise(self) -> bool:
        return self.seeds is None or self.seeds >= SEEDS_FOR_TRAINING_NOISE

    def note(self) -> str:
        """One sentence on what the intervals cover (said out loud with fewer than 3 seeds)."""
        if self.critical is None:
            return ""
        head = f"{self.labels} labels compared at once on {self.examples} test examples (c = {self.critical:.2f})"
        if self.seeds is None:
            return f"{head}; no label trains, so test-set sampling is all the intervals need to cover."
        if self.covers_training_noise:
            return f"{head}; intervals cover test-set sampling and seed-to-seed training noise."
        seeds = "one seed" if self.seeds == 1 else f"{self.seeds} seeds"
        return (
            f"{head}. With {seeds}, the intervals cover test-set sampling only, not training noise: a label outside "
            f"the top group is 'behind ({seeds})', not worse; {SEEDS_FOR_TRAINING_NOISE}+ seeds measure training noise."
        )


@dataclass
class SeedNoise:
    """One label's training noise as the resamples add it."""

    variance: float  # of the label's mean over its seeds: v_b / S (0 for a label that does not train)
    dof: float  # degrees of freedom of that estimate (0: none)
    pooled: bool = True  # the pool's estimate: shared with other labels, so not independent of theirs


def seed_spread(sample: LabelSample) -> float | None:
    """v_b of one label (ties.seed_variances); a corpus metric has no per-example scores: the variance of
    its seed means. None with one seed."""
    if sample.stats.shape[0] < 2:
        return None
    x = per_example_scores(sample)
    if x is None:
        return float(np.var(sample.value(sample.stats.sum(axis=1)), ddof=1))
    return seed_variances(x)[0]


def seed_noise(samples: list[LabelSample], trains: list[bool]) -> list[SeedNoise]:
    """Each label's SeedNoise: the pool's v_b over its S seeds (see step 2); 0 for a label that does not train."""
    own = [seed_spread(s) if t else None for s, t in zip(samples, trains)]
    measured = [(v, s.stats.shape[0] - 1) for v, s in zip(own, samples) if v is not None]
    pool_dof = sum(d for _, d in measured)
    pool = sum(v * d for v, d in measured) / pool_dof if pool_dof else 0.0
    return [
        SeedNoise(pool / s.stats.shape[0] if t else 0.0, float(pool_dof) if t else 0.0, pooled=True)
        for s, t in zip(samples, trains)
    ]


def family_draws(
    samples: list[LabelSample], noise: list[SeedNoise], resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(k,) scores on all data and (R, k) scores on each resample; every sample on the same ids."""
    rng = np.random.default_rng(seed)
    n = samples[0].stats.shape[1]
    examples = multiplicities(rng.integers(0, n, size=(resamples, n)), n)
    everything = np.ones((1, n))
    draws = [s.value(np.matmul(examples, s.stats)).mean(axis=0) for s in samples]  # (R,) each
    points = [float(s.value(np.matmul(everything, s.stats)).mean()) for s in samples]
    shifts = rng.standard_normal((resamples, len(samples))) * np.sqrt([z.variance for z in noise])
    return np.array(points), np.stack(draws, axis=1) + shifts


def critical_value(points: np.ndarray, draws: np.ndarray, level: float = LEVEL) -> tuple[float, np.ndarray]:
    """c and the (k, k) matrix of se_ij: the level-quantile over resamples of the largest |error| / se
    over all pairs. Pairs with se 0 (the same predictions everywhere) have no error to bound."""
    errors = draws - points  # (R, k)
    i, j = np.triu_indices(points.shape[0], k=1)
    pair_errors = errors[:, i] - errors[:, j]  # (R, pairs)
    pair_se = (draws[:, i] - draws[:, j]).std(axis=0, ddof=1)
    se = np.zeros((points.shape[0],) * 2)
    se[i, j] = se[j, i] = pair_se
    live = pair_se > 1e-12
    if not live.any():
        return 0.0, se
    largest = np.abs(pair_errors[:, live] / pair_se[live]).max(axis=1)
    return float(np.quantile(largest, level)), se


def widened(c: float, se: float, examples: int, noise: list[SeedNoise]) -> float:
    """c_ij: the t value with c's normal tail, at the smaller of the degrees of freedom of the pair's parts:
    the examples' (n - 1) and, where a label trains, the pooled seed estimate's. Welch-Satterthwaite's
    estimate of the degrees of freedom is biased up exactly when the seed variance is underestimated
    (the case that makes a difference look large), which let equal labels through 8% of the time at
    3 seeds in bench/tie_rule.py; the smaller part's (the conservative bound of Welch's test) holds."""
    if se <= 0:
        return c
    seeded = [z.dof for z in noise if z.dof > 0 and z.variance > 0]
    return t_matching_normal(c, min([max(examples - 1, 1), *seeded]))


def common_samples(samples: list[LabelSample | None]) -> tuple[list[int], list[LabelSample]]:
    """The positions of labels with data and their samples restricted to the ids all of them have."""
    have = [i for i, s in enumerate(samples) if s is not None]
    if not have:
        return [], []
    ids = sorted(set.intersection(*(set(samples[i].ids) for i in have)))
    return have, [LabelSample(ids, samples[i].take(ids), samples[i].value) for i in have]


def top_group(
    labels: list[str],
    means: list[float],
    samples: list[LabelSample | None],
    higher_is_better: bool,
    seeds: list[int | None],
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> tuple[list[Verdict], Family]:
    """One Verdict per label (the first is the best: labels come best first) and the Family they rest on.

    labels: names, best first; means: leaderboard means; samples: per-example data (None: undecided);
    seeds: each label's number of seeds, None for a label that does not train (no training noise); level:
    the simultaneous coverage (a report across several models asks more of each, cross_model.py)."""
    sign = float(better_sign(higher_is_better))
    have, common = common_samples(samples)
    trained = [s for s in seeds if s is not None]
    family = Family(len(have), None, len(common[0].ids) if common else 0, min(trained) if trained else None)
    verdicts = [Verdict("best", "")] + [
        Verdict("undecided", NO_DATA, sign * (means[0] - m), seeds=_fewest(seeds[0], s))
        for m, s in zip(means[1:], seeds[1:])
    ]
    if not have or have[0] != 0 or len(have) < 2 or family.examples < 2:
        return verdicts, family
    noise = seed_noise(common, [seeds[i] is not None for i in have])
    points, draws = family_draws(common, noise, resamples)
    c, se = critical_value(points, draws, level)
    family.critical = c
    names = [labels[i] for i in have]
    family.points = dict(zip(names, map(float, points)))
    for x, y in zip(*np.triu_indices(len(names), k=1)):
        pair = frozenset((names[x], names[y]))
        family.pair_se[pair] = float(se[x, y])
        family.pair_critical[pair] = widened(c, float(se[x, y]), family.examples, [noise[x], noise[y]])
    for pos, i in enumerate(have[1:], 1):
        v = verdicts[i]
        diff = sign * (points[0] - points[pos])
        half = family.pair_critical[frozenset((names[0], names[pos]))] * se[0, pos]
        v.basis, v.se, v.ci = BASIS, float(se[0, pos]), (float(diff - half), float(diff + half))
        if v.ci[0] > 0:
            v.verdict = "worse" if v.seeds is None or v.seeds >= SEEDS_FOR_TRAINING_NOISE else "behind"
        else:
            v.verdict = "tie"
    return verdicts, family


def _fewest(a: int | None, b: int | None) -> int | None:
    known = [s for s in (a, b) if s is not None]
    return min(known) if known else None
