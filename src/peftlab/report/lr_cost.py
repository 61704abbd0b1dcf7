"""The learning-rate search's cost beside each leaderboard row: the label's search and one run
together, as a multiple of one run (lr_choice.search_cost: what the search trained that no run of the
leaderboard contains; the chosen value's part up to its rung is its first-seed run's start)."""

from __future__ import annotations

from peftlab.comparison.lr_choice import search_cost
from peftlab.report.aggregate import Comparison

COLUMN = "lr search"
NOTE = (
    f"{COLUMN}: the label's learning-rate search and one run together, as multiples of one run's FLOPs and "
    "train seconds (each grid value trained to its rung; the chosen one went on as the first seed)."
)


def multiple(run: float | None, extra: float) -> float | None:
    return (run + extra) / run if run else None


def search_cells(comp: Comparison) -> dict[str, str]:
    """label -> e.g. 'x1.67 FLOPs, x1.71 s' for each label of ``comp`` whose lr was searched."""
    costs = {}
    for folder in sorted({r.dir.parent for r in comp.runs}):
        costs.update(search_cost(folder))
    out = {}
    for e in comp.entries:
        if e.label not in costs:
            continue
        flops = multiple(e.costs.get("flops"), costs[e.label][0])
        seconds = multiple(e.costs.get("train_seconds"), costs[e.label][1])
        out[e.label] = (
            ", ".join(f"x{v:.2f} {unit}" for v, unit in ((flops, "FLOPs"), (seconds, "s")) if v is not None) or "-"
        )
    return out
