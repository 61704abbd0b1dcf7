"""The paired bootstrap over seeds and test examples: its per-example data and its resampling.

A label's runs become a LabelSample (per-example statistics under the task's primary metric, for
each seed); a resample draws seeds with replacement (the training noise) and test examples with
replacement, shared by the labels compared and matched by id (the test-set noise, paired: easy
examples are easy for every method, so a paired interval is much narrower than two independent
ones), and recomputes each label's score as the leaderboard does. A mean of per-example scores
(accuracy, exact match, ROUGE, execution accuracy) is the mean of the drawn examples'
predictions.csv ``score``; a corpus metric (BLEU) is recomputed from per-example statistics summed
over the drawn examples (``Metric.corpus`` in tasks/metrics.py), never averaged sentence by sentence.
Labels without per-example data (older runs without a ``score`` column, a metric peftlab does not
know) cannot be resampled.

The leaderboard's rule, over all labels at once, is top_group.py; ``bootstrap_difference`` is the
interval of one pair (two runs of a comparison, two learning rates on validation), used where one
pair is all there is. A resample is a few numpy array operations (how often each example and seed
was drawn, times the statistics): 1000 resamples of 3 seeds x 500 examples take about 0.1 s per
label on 2 busy CPU cores; for BLEU, counting each run's n-grams once (sacrebleu) costs more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from peftlab.report.runs import Run
from peftlab.rundir.runio import REFERENCE_SEPARATOR
from peftlab.tasks.metrics import metric_of_primary

RESAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass
class LabelSample:
    """One label's per-example statistics: ``stats[s, i]`` for its seed s and example ``ids[i]``
    (a mean metric: [score, 1]; a corpus metric: its summable statistics), and ``value``, which
    turns statistics summed over examples, shape (..., k), into the metric, shape (...)."""

    ids: list[str]
    stats: np.ndarray  # (seeds, examples, k)
    value: Callable[[np.ndarray], np.ndarray]

    def take(self, ids: list[str]) -> np.ndarray:
        where = {i: k for k, i in enumerate(self.ids)}
        return self.stats[:, [where[i] for i in ids]]


def mean_of_scores(stats: np.ndarray) -> np.ndarray:
    """A mean metric from summed [score, 1] statistics: sum of scores / number of examples."""
    return stats[..., 0] / stats[..., 1]


def run_statistics(run: Run) -> tuple[dict[str, np.ndarray], Callable] | None:
    """id -> the example's statistics under the run's primary metric, and the metric of their sums;
    None when the run cannot be resampled (no per-example scores, or a metric peftlab does not know)."""
    metric = metric_of_primary(run.metric)
    if metric is None or not run.predictions:
        return None
    if metric.corpus is not None:
        preds = run.predictions
        refs = [p.reference.split(REFERENCE_SEPARATOR) for p in preds]
        stats = metric.corpus.of_examples([p.prediction for p in preds], refs)
        return dict(zip((p.id for p in preds), stats)), metric.corpus.metric
    scores = run.example_scores()
    return ({i: np.array([s, 1.0]) for i, s in scores.items()}, mean_of_scores) if scores else None


def label_sample(runs: list[Run]) -> LabelSample | None:
    """A label's runs as one LabelSample over the ids every run has; None when any run has no data."""
    per_run = [run_statistics(r) for r in runs]
    if not per_run or any(p is None for p in per_run):
        return None
    ids = sorted(set(per_run[0][0]).intersection(*(p[0] for p in per_run[1:])))
    if not ids:
        return None
    stats = np.array([[p[0][i] for i in ids] for p in per_run], dtype=float)
    return LabelSample(ids, stats, per_run[0][1])


def per_example_scores(sample: LabelSample) -> np.ndarray | None:
    """(seeds, examples) scores of a mean metric; None for a corpus metric (no per-example score)."""
    if sample.value is not mean_of_scores:
        return None
    return sample.stats[..., 0] / sample.stats[..., 1]


def seed_variances(x: np.ndarray) -> tuple[float, float] | None:
    """(v_b, v_e) of one label's (seeds, examples) scores; None with one seed. v_e, the per-example seed
    noise: the mean over examples of the across-seed variance; v_b, a seed's shift of the whole run: the
    variance of the seed means less the v_e / n they carry (top_group.py and sample_size.py use both)."""
    if x.shape[0] < 2:
        return None
    v_e = float(x.var(axis=0, ddof=1).mean())
    v_b = max(0.0, float(x.mean(axis=1).var(ddof=1)) - v_e / x.shape[1])
    return v_b, v_e


def multiplicities(draws: np.ndarray, size: int) -> np.ndarray:
    """(resamples, m) indices in [0, size) -> (resamples, size): how often each index was drawn."""
    rows = draws.shape[0]
    flat = (draws + size * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * size).reshape(rows, size).astype(float)


def resampled_scores(
    stats: np.ndarray, seed_counts: np.ndarray, example_counts: np.ndarray, value: Callable
) -> np.ndarray:
    """A label's score on each resample: the mean over its drawn seeds of the metric on the drawn
    examples. stats (seeds, examples, k); seed_counts (R, seeds); example_counts (R, examples)."""
    per_seed = value(np.matmul(example_counts, stats))  # (seeds, R): statistics summed over the draw
    return (seed_counts * per_seed.T).sum(axis=1) / seed_counts.sum(axis=1)


def bootstrap_difference(
    best: np.ndarray,
    other: np.ndarray,
    value: Callable[[np.ndarray], np.ndarray],
    sign: float = 1.0,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """sign * (best - other) on all seeds and examples, and its 95% percentile bootstrap interval.

    best, other: (seeds, examples, k) statistics on the same examples in the same order.
    Seeds are drawn for each label on its own, then one set of examples for both (paired).
    """
    rng = np.random.default_rng(seed)
    n = best.shape[1]
    seeds_b = multiplicities(rng.integers(0, best.shape[0], size=(resamples, best.shape[0])), best.shape[0])
    seeds_o = multiplicities(rng.integers(0, other.shape[0], size=(resamples, other.shape[0])), other.shape[0])
    examples = multiplicities(rng.integers(0, n, size=(resamples, n)), n)
    diffs = sign * (
        resampled_scores(best, seeds_b, examples, value) - resampled_scores(other, seeds_o, examples, value)
    )
    everything = np.ones((1, n))
    point = sign * (
        resampled_scores(best, np.ones((1, best.shape[0])), everything, value)
        - resampled_scores(other, np.ones((1, other.shape[0])), everything, value)
    )
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(point[0]), float(lo), float(hi)
