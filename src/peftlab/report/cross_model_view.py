"""The cross-model table in words, Markdown, HTML and JSON (the numbers: cross_model.py).

One row per label run on every model: its mean, rank and standing on each model's leaderboard;
then Kendall's tau per pair of models with its interval, and the verdict: whether the top group is
the same on every model, and which labels move in or out of it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import asdict

from peftlab.report.cross_model import CrossModel, seeds_note
from peftlab.report.plots import Plot


def verdict_lines(cm: CrossModel) -> list[str]:
    """The answer across models: the top groups, the labels that move, the rank agreement."""
    lines = []
    tops = {m: set(cm.top[m]) for m in cm.models}
    if len({frozenset(t) for t in tops.values()}) == 1:
        group = ", ".join(lb for lb in cm.labels if lb in tops[cm.models[0]])
        lines.append(f"The top group is the same on every model: {group or '-'}.")
    else:
        for lb in cm.labels:
            inside = [m for m in cm.models if lb in tops[m]]
            if inside and len(inside) < len(cm.models):
                where = "; ".join(f"{cm.standing[lb][m]} on {m}" for m in cm.models)
                lines.append(f"{lb} moves: {where}.")
    for a in cm.agreements:
        lines.append(
            f"Rank agreement {a.first} vs {a.second}, Kendall's tau over {len(cm.labels)} methods: {a.tau:+.2f} "
            f"(at least 95%: {a.low:+.2f} to {a.high:+.2f}; {a.known} of {a.pairs} pairs ordered on both)."
        )
    if cm.missing:
        lines.append(
            "Not on every model (left out of the ranks): "
            + "; ".join(f"{lb} ({', '.join(ms)} only)" for lb, ms in cm.missing.items())
            + "."
        )
    return lines


def rows(cm: CrossModel) -> list[list[str]]:
    """label, then 'mean (rank, standing)' per model."""
    return [
        [lb] + [f"{cm.means[lb][m]:.4f} (#{cm.ranks[lb][m]:g}, {cm.standing[lb][m]})" for m in cm.models]
        for lb in cm.labels
    ]


def markdown(cms: list[CrossModel]) -> str:
    parts = []
    for cm in cms:
        parts.append(f"## {cm.task} across models: test {cm.metric} (mean, rank, standing)\n")
        parts += [f"- {line}" for line in verdict_lines(cm)]
        parts += [f"- {seeds_note(cm)}"] if seeds_note(cm) else []
        parts += ["", "| label | " + " | ".join(cm.models) + " |", "|---|" + "---:|" * len(cm.models)]
        parts += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows(cm)]
        parts.append("")
    return "\n".join(parts) + "\n"


def section(cm: CrossModel, plot: Plot) -> str:
    """The HTML card of one task across models, with its rank plot (cross_model_plot.rank_plot)."""
    esc = html.escape
    head = "".join(f"<th>{esc(m)}</th>" for m in cm.models)
    body = "".join(
        "<tr>" + f"<td>{esc(row[0])}</td>" + "".join(f'<td class="num">{esc(c)}</td>' for c in row[1:]) + "</tr>"
        for row in rows(cm)
    )
    said = "".join(f"<li>{esc(line)}</li>" for line in verdict_lines(cm))
    note = f'<p class="note">{esc(seeds_note(cm))}</p>' if seeds_note(cm) else ""
    figure = (
        f'<figure><img src="data:image/png;base64,{base64.b64encode(plot.png).decode("ascii")}" '
        f'alt="{esc(plot.title)}"><figcaption>{esc(plot.caption)}</figcaption></figure>'
        if plot.png
        else ""
    )
    return (
        f'<h2>Across models<span class="sub">{esc(cm.task)} · test {esc(cm.metric)}: mean (rank, standing)</span></h2>'
        f'<ul class="verdict">{said}</ul>{note}'
        f'<div class="scroll"><table><thead><tr><th>label</th>{head}</tr></thead><tbody>{body}</tbody></table></div>'
        f"{figure}"
        '<p class="note">Kendall\'s tau counts label pairs ordered the same way on two models less those '
        "ordered the opposite way, over all pairs. Its range holds every way the pairs the simultaneous "
        "intervals cannot order (on either model) could fall; each model's intervals are at level "
        f"{cm.level:.4g} so that all hold at once with probability at least 95%.</p>"
    )


def records(cms: list[CrossModel]) -> list[dict]:
    """cross_models.json: every number of the tables, one record per task."""
    return [{**asdict(cm), "verdict": verdict_lines(cm)} for cm in cms]
