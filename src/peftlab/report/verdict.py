"""The answer in words, read off the Pareto fronts: for each cost, which method is best at each level.

A researcher choosing a method asks "what is best if I can afford at most X": the frontier of a
(cost, quality) plot answers it at every X where the answer changes. For each cost axis the
frontier's points, cheapest first, become one line:

    trainable parameters: up to 0: zero_shot 0.000; up to 1.8 M: lora 0.797 (tie with the best);
    up to 135 M: full 0.844 (best)

A point is named "(best)" when it is the comparison's best label and "(tie with the best)" when the
tie rule (report/ties.py: seeds or the bootstrap interval of Δ) cannot separate it from the best:
the cheaper of two tied methods is then the answer at both budgets, which the line lets the reader see.
Forgetting is a cost like the others (less is cheaper); a negative value (the model got better at
general text) counts as cheaper than zero.
"""

from __future__ import annotations

from collections.abc import Callable

from peftlab.humanize import human_bytes
from peftlab.report.aggregate import Comparison, Entry
from peftlab.report.pareto import pareto_front


def _count(n: float) -> str:
    from peftlab.report.tables import human_flops  # local: tables imports this module

    return human_flops(n)


def _seconds(n: float) -> str:
    return f"{n:.0f} s"


def _signed(n: float) -> str:
    return f"{n:+.3f}"


# (cost key in Entry.costs, name in the sentence, how a level is written)
AXES: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("trainable_params", "trainable parameters", _count),
    ("flops", "training FLOPs", _count),
    ("peak_memory_bytes", "training memory", human_bytes),
    ("train_seconds", "training time", _seconds),
    ("forgetting_delta", "forgetting", _signed),
    ("ms_per_token", "inference latency", lambda v: f"{v:.1f} ms/token"),
)


def _standing(e: Entry) -> str:
    if e.tie.verdict == "best":
        return " (best)"
    if e.tie.verdict == "tie":
        return " (tie with the best)"
    return ""


def axis_line(comp: Comparison, key: str, name: str, level: Callable[[float], str]) -> str | None:
    """'<name>: up to <level>: <label> <score>; ...' along the frontier, or None with fewer than two labels."""
    points = [(float(e.costs[key]), e) for e in comp.entries if e.costs.get(key) is not None]
    if len(points) < 2:
        return None
    sign = 1 if comp.higher_is_better else -1
    front = pareto_front([c for c, _ in points], [sign * e.mean for _, e in points])
    steps = [f"up to {level(cost)}: {e.label} {e.mean:.3f}{_standing(e)}" for cost, e in (points[i] for i in front)]
    return f"{name}: {'; '.join(steps)}"


def verdict(comp: Comparison) -> list[str]:
    """The comparison's answer: the best label (and what ties it), then one line per cost axis."""
    if not comp.entries:
        return []
    best = comp.entries[0]
    tied = [e.label for e in comp.entries[1:] if e.tie.verdict == "tie"]
    undecided = [e.label for e in comp.entries[1:] if e.tie.verdict == "undecided"]
    head = f"Best test {comp.metric}: {best.label} {best.mean:.3f}"
    head += f"; tied with it: {', '.join(tied)}" if tied else ""
    head += f"; too few seeds to tell: {', '.join(undecided)}" if undecided else ""
    head += "" if tied or undecided else "; nothing ties it"
    lines = [head]
    for key, name, level in AXES:
        line = axis_line(comp, key, name, level)
        if line:
            lines.append(line)
    return lines
