"""Metrics on free-generated text. Each returns a dict of numbers in [0, 1]; higher is better.

ROUGE uses Google's rouge-score package directly (``evaluate.load('rouge')`` needs the hub),
with Porter stemming, and takes the best reference per example when there are several (the
multi-reference maximum used for DialogSum's three test summaries).
"""

from __future__ import annotations

import re
from typing import Callable

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


def execution_accuracy(db_path) -> Callable[[list[str], list[list[str]]], dict[str, float]]:
    """Predicted and gold SQL run read-only on the database; result rows compared."""
    from peftlab.tasks.sql_exec import execution_match, extract_sql

    def score(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
        hits = 0
        for pred, refs in zip(predictions, references):
            sql = extract_sql(pred)
            hits += any(execution_match(db_path, sql, gold) for gold in refs)
        n = max(len(predictions), 1)
        return {"execution_accuracy": hits / n,
                "exact_match": exact_match([extract_sql(p) for p in predictions], references)["exact_match"]}

    return score


PRIMARY = {"rouge": "rougeL", "exact_match": "exact_match", "execution_accuracy": "execution_accuracy"}
