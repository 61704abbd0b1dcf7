"""The answer in words, read off the Pareto fronts and the top group: for each cost, which methods are
best at each level, and which cheaper ones the data cannot tell apart from them.

A researcher choosing a method asks "what is best if I can afford at most X": the frontier of a
(cost, quality) plot answers it at every X where the answer changes. For each cost axis the
frontier's points, cheapest first, become one line:

    trainable parameters: up to 0: zero_shot 0.000; up to 1.3 M: pfeiffer 0.812 (top group);
    up to 2.5 M: houlsby 0.891 (best, tied by cheaper pfeiffer)

A point is "(best)" for the comparison's best label and "(top group)" when the family-wise rule
(report/top_group.py) cannot separate it from the best. A cheaper label that the same simultaneous
intervals cannot separate from a frontier point is named with it ("tied by cheaper ..."): at that
budget it is as good an answer, for less. The first line names the whole top group, never one
winner alone. Forgetting is a cost like the others (less is cheaper); a negative value (the model
got better at general text) counts as cheaper than zero.
"""

from __future__ import annotations

from collections.abc import Callable

from peftlab.humanize import human_bytes, human_flops
from peftlab.report.aggregate import Comparison, Entry
from peftlab.report.measures import IN_DOMAIN
from peftlab.report.pareto import pareto_front
from peftlab.tasks.metrics import better_sign


def _seconds(n: float) -> str:
    return f"{n:.0f} s"


def _signed(n: float) -> str:
    return f"{n:+.3f}"


# (cost key in Entry.costs, name in the sentence, how a level is written)
AXES: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("trainable_params", "trainable parameters", human_flops),
    ("flops", "training FLOPs", human_flops),
    ("peak_memory_bytes", "training memory", human_bytes),
    ("train_seconds", "training time", _seconds),
    ("forgetting_delta", "forgetting", _signed),
    ("ms_per_token", "decode latency (batch 1)", lambda v: f"{v:.1f} ms/token"),
)


def _standing(e: Entry) -> str:
    if e.tie.verdict == "best":
        return "best"
    return "top group" if e.tie.verdict == "tie" else ""


def _tied_cheaper(comp: Comparison, key: str, point: Entry, cost: float) -> list[str]:
    """Labels costing less than ``point`` on this axis that the simultaneous intervals cannot separate from it."""
    fam = comp.family
    if fam is None:
        return []
    return [
        e.label
        for e in comp.entries
        if e is not point and e.costs.get(key) is not None and float(e.costs[key]) < cost
        if fam.separable(e.label, point.label) is False
    ]


def axis_line(comp: Comparison, key: str, name: str, level: Callable[[float], str]) -> str | None:
    """'<name>: up to <level>: <label> <score>; ...' along the frontier, or None with fewer than two labels."""
    points = [(float(e.costs[key]), e) for e in comp.entries if e.costs.get(key) is not None]
    if len(points) < 2:
        return None
    sign = better_sign(comp.higher_is_better)
    front = pareto_front([c for c, _ in points], [sign * e.mean for _, e in points])
    steps = []
    for cost, e in (points[i] for i in front):
        cheaper = _tied_cheaper(comp, key, e, cost)
        notes = [n for n in (_standing(e), f"tied by cheaper {' and '.join(cheaper)}" if cheaper else "") if n]
        steps.append(f"up to {level(cost)}: {e.label} {e.mean:.3f}" + (f" ({', '.join(notes)})" if notes else ""))
    return f"{name}: {'; '.join(steps)}"


def verdict(comp: Comparison) -> list[str]:
    """The comparison's answer: the top group (and what is undecided), then one line per cost axis."""
    if not comp.entries:
        return []
    best = comp.entries[0]
    group = [f"{e.label} {e.mean:.3f}" for e in comp.entries if e.tie.in_top_group]
    undecided = [e.label for e in comp.entries[1:] if e.tie.verdict == "undecided"]
    if len(group) > 1:
        head = f"Top group for test {comp.metric} (not separable from the best): {', '.join(group)}"
    else:
        head = f"Best test {comp.metric}: {best.label} {best.mean:.3f}, alone in the top group"
    head += f"; too little data to tell: {', '.join(undecided)}" if undecided else ""
    lines = [head]
    in_domain = any(r.summary.forgetting_in_domain for r in comp.runs)
    for key, name, level in AXES:
        name = IN_DOMAIN if in_domain and key == "forgetting_delta" else name
        line = axis_line(comp, key, name, level)
        if line:
            lines.append(line)
    return lines
