"""Is a label's difference to the best one inside the noise? Then it is a tie, not a loss.

The rule (also printed in the report):

* Both labels have >= 2 seeds: the seeds' spread decides. A tie when the intervals mean ± std
  (sample std, ddof=1) overlap, i.e. |mean_best - mean_other| <= std_best + std_other.
  With the 2-5 seeds a comparison can afford, a Welch t-test has almost no power (t_0.975 = 12.7
  at 1 degree of freedom) and its p-value is itself noisy; the overlap rule is the simple,
  transparent convention papers use ("within one std") and only calls a winner when the seeds
  separate. It is deliberately not a significance test.
* Either label has one seed: the seeds say nothing about noise, so the test set does. A paired
  bootstrap over test examples (predictions.csv ``score``, matched by id; a label's per-example
  score is the mean over its seeds): 1000 resamples of the examples with a fixed seed give a 95%
  percentile interval of mean(best - other), oriented so that positive means "best is better".
  A tie when the interval reaches 0 or below.
* One seed and no per-example scores: undecided, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
BOOTSTRAP_SEED = 0

TIE_RULE = (
    "Ties: with ≥ 2 seeds on both sides, a label ties with the best when the mean ± std intervals "
    "(sample std over seeds) overlap. When either side has one seed, a paired bootstrap over test examples "
    f"(per-example scores matched by id, {RESAMPLES} resamples, fixed seed) gives a 95% interval of the "
    "difference to the best; a label ties when that interval includes 0. Without per-example scores a "
    "one-seed comparison is undecided."
)


@dataclass
class Verdict:
    verdict: str  # "best", "tie", "worse" or "undecided"
    basis: str  # "seeds", "bootstrap", "no per-example scores" or ""
    delta: float | None = None  # how much worse than the best (>= 0 means worse), in metric units
    ci: tuple[float, float] | None = None  # bootstrap 95% interval of that difference


def seeds_overlap(best_mean: float, best_std: float, mean: float, std: float) -> bool:
    """mean ± std intervals overlap (a tie within the seeds' spread)."""
    return abs(best_mean - mean) <= best_std + std


def paired_bootstrap(
    best: np.ndarray, other: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float, float]:
    """Mean paired difference best - other and its 95% percentile bootstrap interval.

    Resampling the same example indices for both keeps the pairing: easy examples are easy for
    every method, which is why a paired interval is much narrower than two independent ones.
    """
    d = np.asarray(best, dtype=float) - np.asarray(other, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(resamples, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def label_example_scores(per_run: list[dict[str, float]]) -> dict[str, float]:
    """A label's per-example score: the mean over its runs, for ids every run scored."""
    if not per_run or any(not s for s in per_run):
        return {}
    ids = set(per_run[0]).intersection(*per_run[1:])
    return {i: sum(s[i] for s in per_run) / len(per_run) for i in ids}


def decide(
    best_stats: tuple[float, float | None, int],
    other_stats: tuple[float, float | None, int],
    best_scores: dict[str, float],
    other_scores: dict[str, float],
    higher_is_better: bool,
) -> Verdict:
    """Compare one label with the best. *_stats are (mean, std or None, number of seeds)."""
    sign = 1.0 if higher_is_better else -1.0
    (b_mean, b_std, b_n), (o_mean, o_std, o_n) = best_stats, other_stats
    delta = sign * (b_mean - o_mean)
    if b_n >= 2 and o_n >= 2:
        tie = seeds_overlap(b_mean, b_std or 0.0, o_mean, o_std or 0.0)
        return Verdict("tie" if tie else "worse", "seeds", delta)
    ids = sorted(set(best_scores) & set(other_scores))
    if len(ids) < 2:
        return Verdict("undecided", "no per-example scores", delta)
    b = np.array([best_scores[i] for i in ids])
    o = np.array([other_scores[i] for i in ids])
    _, lo, hi = paired_bootstrap(sign * b, sign * o)
    # Only an interval entirely above 0 says "the best is better"; anything else is a tie.
    return Verdict("worse" if lo > 0 else "tie", "bootstrap", delta, (lo, hi))
