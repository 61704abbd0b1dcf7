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
    inference: bool = False  # an inference-cost figure: flagged when measured beside other CPU runs


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
        "decode ms/token (batch 1)",
        "inference decode ms per generated token (batch 1)",
        lambda v: f"{v:.1f}",
        "decode ms/token (batch 1): inference milliseconds per generated token after the prompt, one request "
        "at a time, merged where the method merges; the median over 16 test prompts, each decoding exactly 32 "
        "tokens (EOS ignored), timed after a warm-up with the optimizer freed and one model resident "
        "(summary.json's inference has batch 16, unmerged, ms per prompt token and peak memory too).",
        inference=True,
    ),
    Measure(
        "prefill_ms_per_prompt",
        "prefill ms/prompt (batch 1)",
        "inference prefill ms per prompt (batch 1)",
        lambda v: f"{v:.1f}",
        "prefill ms/prompt (batch 1): milliseconds of the forward over one test prompt before its first token "
        "(median over 16 prompts, merged where the method merges); prompt tuning pays here for its virtual tokens.",
        inference=True,
    ),
)

# Marks an inference figure measured while other runs shared the CPU (compare --parallel > 1).
SHARED_MARK = "*"
SHARED_NOTE = (
    f"{SHARED_MARK} inference figure measured on a CPU shared with other runs (compare --parallel > 1): slower "
    "than alone and noisier; re-run with --parallel 1 to compare latencies."
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


def shared_cpu(e: Entry) -> bool:
    """Whether some run of ``e`` ran on CPU beside other runs (its timings are not the method's alone)."""
    return any(
        r.summary.launch and r.summary.launch.concurrency > 1 and not (r.summary.hardware and r.summary.hardware.cuda)
        for r in e.runs
    )


def cell(m: Measure, e: Entry) -> str:
    """The entry's figure, marked ``SHARED_MARK`` where an inference figure shared the CPU."""
    value = e.costs.get(m.key)
    if value is None:
        return "-"
    return m.fmt(value) + (f" {SHARED_MARK}" if m.inference and shared_cpu(e) else "")
