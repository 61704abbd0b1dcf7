"""The learning-rate search of a comparison (lr_search.py) as a table: what each grid value scored
on validation, which one was chosen, and what the search cost (not in the leaderboard's columns)."""

from __future__ import annotations

from html import escape

from peftlab.lr_choice import Choice
from peftlab.report.tables import human_flops

HEADER = ["label", "validation by lr", "chosen lr", "search runs", "search FLOPs", "search train s"]
NOTE = (
    "Learning rates chosen on validation (never test): one run per value at the first seed and the "
    "comparison's full per-run budget; the search's cost is shown here and is not in the leaderboard's columns."
)


def cells(c: Choice) -> list[str]:
    chosen = c.chosen
    tried = ", ".join(
        f"{t.lr:.3g}: {'unfinished' if t.validation is None else f'{t.validation:.4f}'}"
        + (" *" if t.lr == chosen else "")
        for t in c.trials
    )
    return [
        c.label,
        f"{c.metric} {tried}",
        "-" if chosen is None else f"{chosen:.3g}",
        str(len(c.trials)),
        human_flops(c.flops),
        f"{c.train_seconds:.1f}",
    ]


def markdown(searches: list[Choice]) -> str:
    if not searches:
        return ""
    lines = ["## Learning-rate search\n", "| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(cells(c)) + " |" for c in searches]
    return "\n".join(lines) + f"\n\n{NOTE}\n"


def html(searches: list[Choice]) -> str:
    th = "".join(f'<th class="l">{escape(h)}</th>' for h in HEADER)
    rows = "".join("<tr>" + "".join(f'<td class="l">{escape(v)}</td>' for v in cells(c)) + "</tr>" for c in searches)
    return (
        f'<h2>Learning-rate search</h2><table class="runs"><thead><tr>{th}</tr></thead><tbody>{rows}</tbody></table>'
        f'<p class="note">{escape(NOTE)}</p>'
    )
