"""Measures a run records only when asked (forgetting, inference cost): a leaderboard column, a
terminal line and a Pareto plot each, shown only in comparisons where some label has them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peftlab.report.aggregate import Comparison, Entry


@dataclass(frozen=True)
class Measure:
    key: str  # Entry.costs key (a RunSummary property, report/aggregate.py DERIVED)
    column: str  # leaderboard header
    axis: str  # Pareto plot axis and terminal line name
    fmt: Callable[[float], str]
    note: str  # leaderboard.md's explanation under the table


MEASURES = (
    Measure(
        "forgetting_delta",
        "forgetting",
        "forgetting (LM loss after - before)",
        lambda v: f"{v:+.3f}",
        "forgetting: language-modelling loss per token on a general text sample after training minus "
        "before (mean over seeds; positive = the model forgot).",
    ),
    Measure(
        "ms_per_token",
        "ms/token",
        "inference ms per token (batch 1)",
        lambda v: f"{v:.1f}",
        "ms/token: inference milliseconds per generated token at batch 1, merged where the method merges "
        "(summary.json's inference has batch 16, unmerged and peak memory too).",
    ),
)


def present(comp: Comparison) -> list[Measure]:
    """The measures some label of ``comp`` recorded, in MEASURES order."""
    return [m for m in MEASURES if any(e.costs.get(m.key) is not None for e in comp.entries)]


def cell(m: Measure, e: Entry) -> str:
    value = e.costs.get(m.key)
    return "-" if value is None else m.fmt(value)
