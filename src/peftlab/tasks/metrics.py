"""Metrics on free-generated text. Each returns a dict of numbers in [0, 1]; higher is better.

ROUGE uses Google's rouge-score package directly (``evaluate.load('rouge')`` needs the hub),
with Porter stemming, and takes the best reference per example when there are several (the
multi-reference maximum used for DialogSum's three test summaries).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, refs in zip(predictions, references):
        # rougeLsum splits summaries into sentences on newlines.
        pred_l = "\n".join(_sentences(pred))
        best = dict.fromkeys(ROUGE_TYPES, 0.0)
        for ref in refs:
            scores = scorer.score("\n".join(_sentences(ref)), pred_l)
            for k in ROUGE_TYPES:
                best[k] = max(best[k], scores[k].fmeasure)
        for k in ROUGE_TYPES:
            totals[k] += best[k]
    n = max(len(predictions), 1)
    return {k: v / n for k, v in totals.items()}


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace, drop a trailing period/semicolon."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .;")


def exact_match(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    hits = sum(any(normalize(p) == normalize(r) for r in refs) for p, refs in zip(predictions, references))
    return {"exact_match": hits / max(len(predictions), 1)}


def execution_accuracy(
    predictions: list[str], references: list[list[str]], databases: list[str | None]
) -> dict[str, float]:
    """Predicted and gold SQL run read-only on each example's database; result rows compared as
    multisets (as lists when the gold query has a top-level ORDER BY). Also reports normalised exact match."""
    from peftlab.tasks.sql_exec import execution_match, extract_sql

    hits = 0
    for pred, refs, db in zip(predictions, references, databases):
        if db is None:
            raise ValueError("execution_accuracy: an example has no database")
        sql = extract_sql(pred)
        hits += any(execution_match(db, sql, gold) for gold in refs)
    n = max(len(predictions), 1)
    return {
        "execution_accuracy": hits / n,
        "exact_match": exact_match([extract_sql(p) for p in predictions], references)["exact_match"],
    }


BLEU_ORDERS = (1, 2, 3, 4)


def bleu(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 with sacrebleu (13a tokenisation, case-sensitive, default 'exp' smoothing), in [0, 1].

    BLEU-n is sacrebleu's corpus BLEU with ``max_ngram_order=n``: the brevity penalty times the
    geometric mean of the clipped 1..n-gram precisions. Corpus BLEU (n-gram counts and lengths
    summed over all examples before dividing) is what papers and sacrebleu report; the mean of
    sentence BLEUs is a different, noisier number (short outputs with no 4-gram match score 0).

    Several references per example: each n-gram is clipped by its largest count in any one
    reference, and the reference length is the one closest to the prediction's. Examples may
    have different numbers of references: sacrebleu wants equal-length reference streams, so the
    shorter lists are padded with ``None``, which sacrebleu drops (padding with '' would count a
    zero-length reference and could wrongly cancel the brevity penalty).
    """
    from sacrebleu.metrics import BLEU

    if len(predictions) != len(references):
        raise ValueError(f"bleu: {len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        return {f"bleu{n}": 0.0 for n in BLEU_ORDERS}
    for i, refs in enumerate(references):
        if not refs:
            raise ValueError(f"bleu: example {i} has no reference")
    width = max(len(refs) for refs in references)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]
    return {
        f"bleu{n}": BLEU(max_ngram_order=n).corpus_score(list(predictions), streams).score / 100 for n in BLEU_ORDERS
    }


def bleu_statistics(predictions: list[str], references: list[list[str]]) -> np.ndarray:
    """Per example, the sufficient statistics of corpus BLEU-4, as sacrebleu counts them for bleu():
    [hypothesis length, closest reference length, clipped matches of 1..4-grams, 1..4-grams].
    Summed over any examples (with repeats), they give those examples' corpus BLEU-4 (bleu_of_statistics)."""
    import numpy as np
    from sacrebleu.metrics import BLEU

    order = max(BLEU_ORDERS)
    # effective_order only changes sentence scores (unused here) and silences sacrebleu's
    # sentence-level warning; the counts are the same.
    scorer = BLEU(max_ngram_order=order, effective_order=True)
    rows = []
    for i, (pred, refs) in enumerate(zip(predictions, references, strict=True)):
        if not refs:
            raise ValueError(f"bleu: example {i} has no reference")
        s = scorer.sentence_score(pred, list(refs))
        rows.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
    return np.array(rows, dtype=float).reshape(len(rows), 2 + 2 * order)


def bleu_of_statistics(stats: np.ndarray) -> np.ndarray:
    """Corpus BLEU-4 in [0, 1] from summed bleu_statistics (..., 10), vectorised over the leading axes:
    sacrebleu's compute_bleu with its default 'exp' smoothing (the k-th n-gram order without a match
    counts 1 / (2^k * n-grams) instead of 0), brevity penalty exp(1 - ref/hyp) when hyp < ref, and 0
    when nothing matches or some order has no n-gram at all."""
    import numpy as np

    stats = np.asarray(stats, dtype=float)
    order = (stats.shape[-1] - 2) // 2
    hyp, ref = stats[..., 0], stats[..., 1]
    correct, total = stats[..., 2 : 2 + order], stats[..., 2 + order : 2 + 2 * order]
    with np.errstate(divide="ignore", invalid="ignore"):
        brevity = np.where(hyp >= ref, 1.0, np.exp(1 - ref / hyp))  # hyp 0: exp(-inf) = 0
        missing = correct == 0
        precision = np.where(missing, 1 / (2.0 ** np.cumsum(missing, axis=-1) * total), correct / total)
        score = brevity * np.exp(np.log(precision).mean(axis=-1))
    defined = (correct.sum(axis=-1) > 0) & (total > 0).all(axis=-1)
    return np.where(defined, score, 0.0)


def _gold_labels(predictions: list[str], references: list[list[str]]) -> list[str]:
    """Per example, the reference the prediction matched (after strip), else the first reference."""
    golds = []
    for pred, refs in zip(predictions, references):
        refs = [r.strip() for r in refs]
        golds.append(pred.strip() if pred.strip() in refs else (refs[0] if refs else ""))
    return golds


def accuracy(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Share of examples whose label equals any reference label exactly after strip (case counts:
    labels are labels, unlike exact_match's normalised free text)."""
    hits = sum(p.strip() in {r.strip() for r in refs} for p, refs in zip(predictions, references))
    return {"accuracy": hits / max(len(predictions), 1)}


def macro_f1(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Unweighted mean of per-label F1 over the labels seen in the references, so rare classes
    count as much as common ones (accuracy alone rewards always answering the majority label).

    The gold label of an example is the reference the prediction matched (after strip), else its
    first reference. A predicted label outside that set is a miss for the gold label (a false
    negative) but not a class of its own. F1 of a label = 2TP / (2TP + FP + FN).
    """
    golds = _gold_labels(predictions, references)
    preds = [p.strip() for p in predictions]
    labels = sorted(set(golds))
    if not labels:
        return {"macro_f1": 0.0}
    f1s = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(golds, preds))
        fp = sum(g != label and p == label for g, p in zip(golds, preds))
        fn = sum(g == label and p != label for g, p in zip(golds, preds))
        f1s.append(2 * tp / (2 * tp + fp + fn))  # > 0 denominator: every label has a gold example
    return {"macro_f1": sum(f1s) / len(f1s)}


def classification(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Accuracy and macro-F1 together (the 'accuracy' metric of `peftlab score`)."""
    return {**accuracy(predictions, references), **macro_f1(predictions, references)}


@dataclass(frozen=True)
class CorpusStatistics:
    """How a corpus-level primary (not a mean of per-example scores) is recomputed on any examples,
    repeats included (a bootstrap resample): per-example statistics, summed, then turned into the metric."""

    of_examples: Callable[[list[str], list[list[str]]], np.ndarray]  # (predictions, references) -> (examples, k)
    metric: Callable[[np.ndarray], np.ndarray]  # summed statistics (..., k) -> the primary (...)


@dataclass(frozen=True)
class Metric:
    """A task metric: what it computes and which of its numbers ranks runs."""

    name: str
    compute: Callable[..., dict[str, float]]  # (predictions, references[, databases]) -> {key: value}
    primary: str  # the key of its result a leaderboard ranks by
    needs_database: bool = False  # execution_accuracy: the SQL runs on each example's database
    higher_is_better: bool = True
    # None: the primary is the mean of the examples' own primaries (predictions.csv `score`), so a
    # resample's value is the mean of its examples' scores. Otherwise how to recompute it (BLEU).
    corpus: CorpusStatistics | None = None


def better_sign(higher_is_better: bool) -> int:
    """+1 where larger scores are better, -1 for losses and errors: so that the best of some scores is
    always max(sign * score), and sign * (a - b) > 0 says a is better than b."""
    return 1 if higher_is_better else -1


REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add a metric: task configs may name it from now on (task_config.py checks names against this
    registry when a config is validated)."""
    if metric.name in REGISTRY:
        # A second metric under one name would silently change what every task naming it scores.
        first = REGISTRY[metric.name].compute
        raise ValueError(
            f"metric {metric.name!r} is already registered (computed by {first.__module__}.{first.__qualname__}); "
            "give the new metric another name"
        )
    REGISTRY[metric.name] = metric
    return metric


for _metric in (
    Metric("rouge", rouge, primary="rougeL"),
    Metric("bleu", bleu, primary="bleu4", corpus=CorpusStatistics(bleu_statistics, bleu_of_statistics)),
    Metric("exact_match", exact_match, primary="exact_match"),
    Metric("accuracy", classification, primary="accuracy"),
    Metric("execution_accuracy", execution_accuracy, primary="execution_accuracy", needs_database=True),
):
    register_metric(_metric)


def metric_of_primary(key: str) -> Metric | None:
    """The registered metric whose primary is KEY (a run's summary.json primary_metric), if any."""
    return next((m for m in REGISTRY.values() if m.primary == key), None)


class _TextMetrics(Mapping[str, Callable[[list[str], list[list[str]]], dict[str, float]]]):
    """{name: compute} of the registered metrics that need no database, read from REGISTRY at each
    access: a metric registered after import is there too."""

    def _live(self) -> dict[str, Callable]:
        return {m.name: m.compute for m in REGISTRY.values() if not m.needs_database}

    def __getitem__(self, name: str) -> Callable[[list[str], list[list[str]]], dict[str, float]]:
        return self._live()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._live())

    def __len__(self) -> int:
        return len(self._live())


METRICS = _TextMetrics()
"""Metrics that need nothing but predictions and references: what `peftlab score` computes from a
predictions file (execution_accuracy needs each example's database)."""
