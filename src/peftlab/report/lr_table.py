"""The learning-rate search of a comparison (lr_search.py) as tables: each grid value's validation
score at each rung, the value chosen, whether it sits at an edge of the grid, whether it is inside the
validation noise, and what the search cost (beside the leaderboard's columns, not in them).

Noise: a validation set is small, and the best of a few values is a maximum, so the winner's margin
overstates. A paired bootstrap over the validation examples (report/ties.py's bootstrap_difference,
on each example's score at the deciding rung, from the search runs' rungs.jsonl) gives a 95% interval of
chosen - runner-up; when it includes 0, the choice is inside the noise.
"""

from __future__ import annotations

from html import escape

import numpy as np

from peftlab.comparison.lr_choice import Choice, Trial, rung_key
from peftlab.report.tables import human_flops
from peftlab.report.ties import bootstrap_difference, mean_of_scores
from peftlab.tasks.metrics import better_sign

NOTE = (
    "Learning rates chosen on validation (never test) by successive halving: every value trains on the whole "
    "budget's schedule at the first seed and stops at the first rung (a fraction of the budget); the best "
    "third goes on to the next rung, and after the last the best one goes on from its checkpoint as the "
    "label's first-seed run. A score is the best validation so far (a tie goes to the smaller lr). The "
    "search's cost is shown here and in the leaderboard's lr search column, not in its cost columns; x: "
    "search + one run, as multiples of one run. Noise: a paired bootstrap over validation examples (1000 "
    "resamples) of chosen - runner-up at the deciding rung; an interval that includes 0 means the choice is "
    "inside the noise."
)


def rung_name(stop_at: float | None) -> str:
    return "end" if stop_at is None else f"{100 * stop_at:.0f}%"


def rungs_of(searches: list[Choice]) -> list[float | None]:
    """Every rung of the searches, and the end where a value trained the whole budget."""
    stops = sorted({rung_key(r) for c in searches for r in c.rungs})
    finished = any(t.finished for c in searches for t in c.trials)
    return stops + ([None] if finished else [])


def value_rows(searches: list[Choice]) -> tuple[list[str], list[list[str]]]:
    """One row per (label, grid value): its score at each rung ('-' where it did not go)."""
    stops = rungs_of(searches)
    header = ["label", "lr"] + [f"validation @ {rung_name(s)}" for s in stops] + ["chosen"]
    rows = []
    for c in searches:
        for t in c.trials:
            scores = [_score(t, s) for s in stops]
            rows.append([c.label, f"{t.lr:.3g}", *scores, "*" if t.lr == c.chosen else ""])
    return header, rows


def _score(t: Trial, stop_at: float | None) -> str:
    if stop_at is None:
        return "-" if t.final is None else f"{t.final:.4f}"
    rung = t.rungs.get(rung_key(stop_at))
    return "-" if rung is None else f"{rung.value:.4f}"


def noise(c: Choice) -> tuple[float, float, float] | None:
    """(chosen - runner-up, 95% interval) over validation examples at the deciding rung, oriented so
    that positive favours the choice; None without a runner-up or per-example scores."""
    if c.deciding is None:
        return None
    stop_at, (best, other, *_) = c.deciding
    a, b = example_scores(best, stop_at), example_scores(other, stop_at)
    ids = sorted(set(a) & set(b))
    if len(ids) < 2:
        return None
    stats = [np.array([[[a[i], 1.0] for i in ids]]), np.array([[[b[i], 1.0] for i in ids]])]
    return bootstrap_difference(*stats, mean_of_scores, float(better_sign(c.higher_is_better)))


def example_scores(t: Trial, stop_at: float | None) -> dict[str, float]:
    """Each validation example's score at that rung (rungs.jsonl); {} when not recorded."""
    rung = t.rungs.get(rung_key(stop_at)) if stop_at is not None else None
    return rung.examples if rung else {}


def flags(c: Choice) -> list[str]:
    """What to be careful about in a choice: an edge of the grid, a margin inside the noise."""
    out = []
    if c.edge:
        out.append(f"best at the {c.edge} lr tried: widen the grid")
    if n := noise(c):
        delta, lo, hi = n
        where = "inside" if lo <= 0 <= hi else "outside"
        out.append(f"{where} validation noise: chosen - runner-up {delta:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}]")
    return out


def choice_cells(c: Choice) -> list[str]:
    extra_flops, extra_s = c.extra
    times = [
        f"x{(run + extra) / run:.2f} {unit}"
        for run, extra, unit in ((c.run_flops, extra_flops, "FLOPs"), (c.run_seconds, extra_s, "train s"))
        if run
    ]
    return [
        c.label,
        c.metric,
        "-" if c.chosen is None else f"{c.chosen:.3g}",
        "; ".join(flags(c)) or "-",
        f"{human_flops(c.flops)} FLOPs, {c.train_seconds:.1f} s" + (f" ({', '.join(times)})" if times else ""),
    ]


CHOICE_HEADER = ["label", "validation metric", "chosen lr", "check", "search trained (x: with one run)"]


def markdown(searches: list[Choice]) -> str:
    if not searches:
        return ""
    header, rows = value_rows(searches)
    lines = ["## Learning-rate search\n", _md_row(header), "|" + "|".join("---" for _ in header) + "|"]
    lines += [_md_row(r) for r in rows] + [
        "",
        _md_row(CHOICE_HEADER),
        "|" + "|".join("---" for _ in CHOICE_HEADER) + "|",
    ]
    lines += [_md_row(choice_cells(c)) for c in searches]
    return "\n".join(lines) + f"\n\n{NOTE}\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def html(searches: list[Choice]) -> str:
    header, rows = value_rows(searches)
    choices = [choice_cells(c) for c in searches]
    return f"<h2>Learning-rate search</h2>{_table(header, rows)}{_table(CHOICE_HEADER, choices)}" + (
        f'<p class="note">{escape(NOTE)}</p>'
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f'<th class="l">{escape(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td class="l">{escape(v)}</td>' for v in r) + "</tr>" for r in rows)
    return f'<table class="runs"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'
