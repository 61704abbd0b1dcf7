"""Learning curves and Pareto frontiers as PNG bytes.

Figures are drawn on matplotlib's Agg canvas directly, never through pyplot: no display is needed
(CI, servers) and the caller's global backend (a notebook's, say) is left alone.

Learning curves draw one line per run, coloured by label: seeds of a label share a colour, so
their spread is visible as-is. Averaging seeds would need interpolation (two seeds never
validate at the same second or FLOP count), which would invent points no run measured.

Pareto plots draw one point per label (mean over seeds, error bar = std) against a cost. A label
is on the frontier when no cheaper-or-equal label is at least as good; frontier points are
filled and joined by the staircase of what each budget can buy, the others are hollow.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from peftlab.report import measures
from peftlab.report.aggregate import Comparison
from peftlab.report.pareto import pareto_front
from peftlab.tasks.metrics import better_sign

STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": "#374151",
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "legend.frameon": False,
    "legend.fontsize": 8,
}
SIZE, DPI = (6.4, 4.0), 110


@dataclass
class Plot:
    """One figure: ``png`` is None when the data for it is absent, and ``note`` says why."""

    name: str
    title: str
    caption: str
    png: bytes | None = None
    note: str = ""


def label_colors(comp: Comparison) -> dict[str, str]:
    """A stable colour per label, in leaderboard order (the same in every plot)."""
    cmap = matplotlib.colormaps["tab10" if len(comp.entries) <= 10 else "tab20"]
    return {e.label: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, e in enumerate(comp.entries)}


def _trains(e) -> bool:
    return any(r.trains and r.summary.steps != 0 for r in e.runs)


def _render(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def learning_curve(comp: Comparison, x_key: str, x_label: str, colors: dict[str, str]) -> Plot:
    metric = comp.metric
    plot = Plot(
        f"curve-{x_key}",
        f"Validation {metric} vs {x_label}",
        f"Validation {metric} during training against {x_label}, one line per run (seeds share a colour).",
    )
    lines = []
    for e in comp.entries:
        for r in e.runs:
            pts = [(m[x_key], m["validation"][metric]) for m in r.validation_curve() if m.get(x_key) is not None]
            if pts:
                lines.append((e, r, pts))
    if not lines:
        has_validation = any(r.validation_curve() for r in comp.runs)
        plot.note = (
            f"no run records {x_label} on its validation lines in metrics.jsonl."
            if has_validation
            else "no run has validation lines in metrics.jsonl."
        )
        return plot
    drawn = {e.label for e, _, _ in lines}
    untrained = [e.label for e in comp.entries if e.label not in drawn and not _trains(e)]
    absent = [e.label for e in comp.entries if e.label not in drawn and _trains(e)]
    if untrained:  # expected (zero-shot trains nothing): said in the caption, not flagged
        plot.caption += f" No curve for labels that train nothing: {', '.join(untrained)}."
    if absent:
        plot.note = f"Not drawn (no validation lines with {x_label}): {', '.join(absent)}."
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=SIZE)
        ax = fig.add_subplot()
        seen = set()
        for e, _, pts in lines:
            xs, ys = zip(*sorted(pts))
            first = e.label not in seen
            seen.add(e.label)
            ax.plot(
                xs,
                ys,
                marker="o",
                markersize=3.5,
                linewidth=1.6,
                alpha=0.9,
                color=colors[e.label],
                label=f"{e.label} ({e.n} seed{'s' if e.n > 1 else ''})" if first else None,
            )
        ax.set_title(plot.title)
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"validation {metric}")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        # Below the axes: inside, it hides the very curves being compared.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
        plot.png = _render(fig)
    return plot


def _draw_points(ax, points: list, front: list[int], colors: dict[str, str]) -> list:
    """Each label's mean ± std at its cost: filled on the frontier, hollow when dominated; returns the
    labels' text artists (``_separate`` moves them apart)."""
    texts = []
    for i, (e, c) in enumerate(points):
        on = i in front
        ax.errorbar(
            [c],
            [e.mean],
            yerr=[e.std] if e.std else None,
            fmt="o",
            markersize=7,
            capsize=3,
            color=colors[e.label],
            markerfacecolor=colors[e.label] if on else "white",
            markeredgewidth=1.6,
            zorder=3,
        )
        # A translucent white box keeps a label readable where it crosses the frontier line.
        texts.append(
            ax.annotate(
                e.label,
                (c, e.mean),
                xytext=(6, 4),
                textcoords="offset points",
                fontsize=8,
                color="#111827" if on else "#6b7280",
                zorder=4,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75},
            )
        )
    return texts


def pareto(
    comp: Comparison,
    cost_key: str,
    x_label: str,
    colors: dict[str, str],
    log: bool = False,
    unit: str = "",
    from_zero: bool = True,
) -> Plot:
    """``from_zero``: the x axis starts at 0 (FLOPs: zero-shot spends none; not so for memory, which
    the frozen weights fill whatever the method)."""
    metric = comp.metric
    plot = Plot(
        f"pareto-{cost_key}",
        f"Test {metric} vs {x_label}",
        f"Test {metric} (mean ± std over seeds) against {x_label}; filled points joined by the staircase "
        "are the Pareto frontier (nothing cheaper is as good), hollow points are dominated.",
    )
    points = [(e, e.costs[cost_key]) for e in comp.entries if e.costs.get(cost_key) is not None]
    if not points:
        plot.note = f"no run records {x_label} in summary.json."
        return plot
    if len(points) < 2:
        plot.note = f"a frontier needs at least two labels with {x_label}; this comparison has {len(points)}."
        return plot
    missing = [e.label for e in comp.entries if e.costs.get(cost_key) is None]
    notes = [f"Not drawn (no {x_label} recorded): {', '.join(missing)}."] if missing else []
    if cost_key == "peak_memory_bytes":
        kinds = {k for e, _ in points for k in e.memory_kind.split(", ") if k}
        if len(kinds) > 1:
            notes.append(f"Peak memory mixes kinds ({', '.join(sorted(kinds))}): not comparable across them.")
    plot.note = " ".join(notes)
    sign = better_sign(comp.higher_is_better)
    costs = [float(c) for _, c in points]
    front = pareto_front(costs, [sign * e.mean for e, _ in points])
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=SIZE)
        ax = fig.add_subplot()
        texts = _draw_points(ax, points, front, colors)
        fx = [costs[i] for i in front]
        fy = [points[i][0].mean for i in front]
        ax.plot(fx, fy, drawstyle="steps-post", color="#374151", linewidth=1.2, alpha=0.7, zorder=2)
        _cost_axis(ax, costs, log, unit, from_zero)
        ax.set_title(plot.title)
        ax.set_xlabel(x_label + (" (log scale)" if log else ""))
        ax.set_ylabel(f"test {metric}")
        _separate(fig, texts, [(c, e.mean) for e, c in points])
        plot.png = _render(fig)
    return plot


# Where a point's label may go, in order of preference: (dx, dy) in points and alignment.
LABEL_SPOTS = (
    (6, 4, "left"),
    (6, -11, "left"),
    (-6, 4, "right"),
    (-6, -11, "right"),
    (0, 9, "center"),
    (0, -17, "center"),
    (8, 16, "left"),
    (8, -23, "left"),
    (-8, 16, "right"),
    (-8, -23, "right"),
    (0, 22, "center"),
    (0, -30, "center"),
    (8, 28, "left"),
    (-8, 28, "right"),
)


def _separate(fig: Figure, texts: list, points: list[tuple[float, float]]) -> None:
    """Give each point label the first spot around its point that overlaps no other label or
    marker and stays inside the axes (methods of similar cost crowd together)."""
    from matplotlib.transforms import Bbox

    if not texts:
        return
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # settle autoscaled limits and text layout before measuring
    renderer = fig.canvas.get_renderer()
    ax = texts[0].axes
    inside = ax.get_window_extent(renderer)
    r = 5 * fig.dpi / 72  # marker radius in pixels
    taken = [Bbox.from_extents(x - r, y - r, x + r, y + r) for x, y in (ax.transData.transform(p) for p in points)]
    for t in texts:
        best = None
        for dx, dy, ha in LABEL_SPOTS:
            t.xyann = (dx, dy)
            t.set_horizontalalignment(ha)
            box = t.get_window_extent(renderer)
            fits = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            # Overlaps hurt more than leaving the axes a little; the first spot wins ties.
            cost = 10 * sum(box.overlaps(b) for b in taken) + (0 if fits else 3)
            if best is None or cost < best[0]:
                best = (cost, dx, dy, ha)
            if cost == 0:
                break
        _, dx, dy, ha = best
        t.xyann = (dx, dy)
        t.set_horizontalalignment(ha)
        taken.append(t.get_window_extent(renderer))


def _cost_axis(ax, costs: list[float], log: bool, unit: str, from_zero: bool) -> None:
    ax.margins(x=0.12, y=0.1)  # room for the point labels
    ax.xaxis.set_major_formatter(EngFormatter(unit=unit, sep=" " if unit else ""))
    if not log:
        if from_zero:
            ax.set_xlim(left=0, right=max(costs) * 1.2 if max(costs) > 0 else 1)
        return
    nonzero = [c for c in costs if c > 0]
    if len(nonzero) == len(costs):
        ax.set_xscale("log")
    else:
        # Zero-shot has 0 trainable parameters: symlog keeps 0 on the axis, one decade left of the rest.
        thresh = 10 ** math.floor(math.log10(min(nonzero))) if nonzero else 1.0
        ax.set_xscale("symlog", linthresh=thresh, linscale=0.6)
        ax.set_xlim(left=-thresh * 0.1)
    ax.set_xlim(right=max(costs) * 4 if nonzero else 10)
    ax.xaxis.set_major_formatter(EngFormatter(unit=unit, sep=" " if unit else ""))


def comparison_plots(comp: Comparison) -> list[Plot]:
    """Every plot of one comparison, in report order (skipped ones carry their note)."""
    colors = label_colors(comp)
    return [
        learning_curve(comp, "flops", "training FLOPs", colors),
        learning_curve(comp, "seconds", "training seconds", colors),
        learning_curve(comp, "examples", "training examples", colors),
        pareto(comp, "trainable_params", "trainable parameters", colors, log=True),
        pareto(comp, "flops", "training FLOPs", colors),
        pareto(comp, "peak_memory_bytes", "peak memory", colors, unit="B", from_zero=False),
    ] + [
        # Measures runs record when asked (report/measures.py): not from zero, not logarithmic (a method
        # may even lower the LM loss: a negative forgetting).
        pareto(comp, m.key, m.axis, colors, from_zero=False)
        for m in measures.present(comp)
    ]
