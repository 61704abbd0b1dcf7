"""Score a predictions.csv (as written by a run or `peftlab eval`) with any text metric, offline.

The file has the columns id, input, reference, prediction; several references in one cell are
joined with " ||| " (see runio.write_predictions). Only `reference` and `prediction` are needed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from peftlab.errors import PeftlabError, suggest
from peftlab.tasks.metrics import METRICS

REF_SEP = " ||| "
REQUIRED = ("reference", "prediction")


def read_predictions(path: Path) -> tuple[list[str], list[list[str]]]:
    """(predictions, references) from a predictions.csv; PeftlabError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise PeftlabError(f"{path}: no such file")
    predictions: list[str] = []
    references: list[list[str]] = []
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, strict=True)
            header = reader.fieldnames
            if not header:
                raise PeftlabError(f"{path}: file is empty (expected a header: id,input,reference,prediction)")
            for col in REQUIRED:
                if col not in header:
                    raise PeftlabError(
                        f"{path}: missing column '{col}'{suggest(col, header)} (header is: {','.join(header)})"
                    )
            for row in reader:
                if None in row or any(row[c] is None for c in header):
                    n = len(row.get(None, [])) + sum(row[c] is not None for c in header)
                    raise PeftlabError(f"{path}: line {reader.line_num}: {n} fields, expected {len(header)}")
                predictions.append(row["prediction"])
                references.append(row["reference"].split(REF_SEP))
    except csv.Error as e:
        raise PeftlabError(f"{path}: line {reader.line_num}: malformed CSV ({e})") from None
    except UnicodeDecodeError as e:
        raise PeftlabError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not predictions:
        raise PeftlabError(f"{path}: no rows after the header, nothing to score")
    return predictions, references


def score_csv(path, metric: str) -> dict[str, float]:
    """Read PATH and return METRICS[metric](predictions, references), e.g. {'bleu1': ..., 'bleu4': ...}."""
    if metric not in METRICS:
        raise PeftlabError(
            f"unknown metric '{metric}'{suggest(metric, list(METRICS))}; choose one of: {', '.join(METRICS)}"
        )
    predictions, references = read_predictions(Path(path))
    return METRICS[metric](predictions, references)
