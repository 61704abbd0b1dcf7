"""Score a predictions.csv (as written by a run or `peftlab eval`) with any text metric, offline.

The file has the columns id, input, reference, prediction; several references in one cell are
joined with " ||| " (see runio.write_predictions). Only `reference` and `prediction` are needed.
"""

from __future__ import annotations

from pathlib import Path

from peftlab.errors import PeftlabError, suggest
from peftlab.rundir.runio import REFERENCE_SEPARATOR, read_predictions_csv
from peftlab.tasks.metrics import METRICS

REQUIRED = ("reference", "prediction")


def read_predictions(path: Path) -> tuple[list[str], list[list[str]]]:
    """(predictions, references) from a predictions.csv; PeftlabError naming the file and the problem."""
    rows = read_predictions_csv(path, REQUIRED)
    if not rows:
        raise PeftlabError(f"{path}: no rows after the header, nothing to score")
    return [r["prediction"] for r in rows], [r["reference"].split(REFERENCE_SEPARATOR) for r in rows]


def score_csv(path, metric: str) -> dict[str, float]:
    """Read PATH and return METRICS[metric](predictions, references), e.g. {'bleu1': ..., 'bleu4': ...}."""
    if metric not in METRICS:
        raise PeftlabError(
            f"unknown metric '{metric}'{suggest(metric, list(METRICS))}; choose one of: {', '.join(METRICS)}"
        )
    predictions, references = read_predictions(Path(path))
    return METRICS[metric](predictions, references)
