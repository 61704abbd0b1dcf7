"""The ranks across models as a picture: one column per model, one line per method from its rank on
one model to its rank on the next (a slope chart). Lines that cross are the pairs the models order
differently; a label inside a model's top group is a filled dot, outside it a hollow one, so a method
that moves out of the top group is seen at a glance. The title gives Kendall's tau and its interval.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from peftlab.report.cross_model import CrossModel
from peftlab.report.plots import DPI, STYLE, Plot, _render


def rank_plot(cm: CrossModel) -> Plot:
    plot = Plot(
        "ranks-across-models",
        f"{cm.task}: rank per model",
        "Each method's rank on each model (1 = best; ties share a rank). Filled: in that model's top group.",
    )
    if len(cm.labels) < 2:
        plot.note = "fewer than two methods ran on every model"
        return plot
    cmap = matplotlib.colormaps["tab10" if len(cm.labels) <= 10 else "tab20"]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(1.6 + 1.9 * len(cm.models), 0.9 + 0.42 * len(cm.labels)), dpi=DPI)
        ax = fig.add_subplot()
        xs = np.arange(len(cm.models))
        for i, lb in enumerate(cm.labels):
            color = matplotlib.colors.to_hex(cmap(i % cmap.N))
            ys = [cm.ranks[lb][m] for m in cm.models]
            ax.plot(xs, ys, color=color, linewidth=1.8)
            for x, m, y in zip(xs, cm.models, ys):
                filled = lb in cm.top[m]
                ax.plot(x, y, "o", color=color, markerfacecolor=color if filled else "white", markersize=7)
            ax.annotate(
                lb,
                (0, ys[0]),
                xytext=(-9, 0),
                textcoords="offset points",
                ha="right",
                va="center",
                fontsize=8,
                color=color,
            )
        ax.set_xticks(xs, cm.models)
        ax.set_xlim(-0.2 - 0.07 * max(len(lb) for lb in cm.labels), len(cm.models) - 0.7)
        ax.set_ylim(len(cm.labels) + 0.5, 0.5)
        ax.set_yticks(range(1, len(cm.labels) + 1))
        ax.set_ylabel("rank")
        ax.grid(axis="x", visible=False)
        if len(cm.models) == 2:  # more models: one tau per pair, in the table's lines
            a = cm.agreements[0]
            ax.set_title(f"Kendall's tau {a.tau:+.2f} (at least 95%: {a.low:+.2f} to {a.high:+.2f})")
        plot.png = _render(fig)
    return plot
