"""Measures a run records only when asked (forgetting, inference cost): a leaderboard column, a
terminal line and a Pareto plot each, shown only in comparisons where some label has them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

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


IN_DOMAIN = "in-domain loss change"
IN_DOMAIN_NOTE = (
    f"{IN_DOMAIN}: language-modelling loss per token on the trained task's own texts after training minus "
    "before (forgetting.in_domain: true; mean over seeds; negative = the model learned the task's text)."
)


def present(comp: Comparison) -> list[Measure]:
    """The measures some label of ``comp`` recorded, in MEASURES order (forgetting measured on the
    trained task's own texts named for what it is: forgetting.in_domain)."""
    shown = [m for m in MEASURES if any(e.costs.get(m.key) is not None for e in comp.entries)]
    in_domain = any(r.summary.forgetting_in_domain for r in comp.runs)
    return [
        replace(m, column=IN_DOMAIN, axis=f"{IN_DOMAIN} (LM loss after - before)", note=IN_DOMAIN_NOTE)
        if in_domain and m.key == "forgetting_delta"
        else m
        for m in shown
    ]


def cell(m: Measure, e: Entry) -> str:
    value = e.costs.get(m.key)
    return "-" if value is None else m.fmt(value)
