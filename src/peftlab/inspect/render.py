"""Token attributions drawn two ways: a heatmap PNG (matplotlib, Agg) and an HTML snippet.

Both colour each token on one diverging scale centred at zero (red = made the output more likely,
blue = less likely, white = no effect), symmetric, so colours compare within one example. The scale
ends at the 98th percentile of |score|, not the maximum: on chat models a template token or two (an
attention sink such as the newline after "system") can score 10x any word of the text and would
wash every other token out; the few beyond the end show at full colour and are counted in the
caption, and the exact scores are in the JSON and the HTML tooltips. Tokens wrap into lines at a
fixed width and at the prompt's own newlines (shown as ↵), so a long dialogue reads as text.
"""

from __future__ import annotations

import html
import textwrap
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display (CI, servers)
import matplotlib.pyplot as plt
from matplotlib import colors
from matplotlib.cm import ScalarMappable
from matplotlib.patches import Rectangle

CMAP = "RdBu_r"
COLUMNS = 100  # characters per line of the heatmap
FONT = 10  # points; DejaVu Sans Mono's advance is 0.602 em
CHAR_IN = 0.602 * FONT / 72
LINE_IN = 1.55 * FONT / 72


def shown(token: str) -> tuple[str, bool]:
    """(text to draw, whether a line break follows): whitespace that would be invisible gets a glyph."""
    breaks = "\n" in token
    text = token.replace("\r", "").replace("\n", "↵").replace("\t", "→")
    return (text or "∅"), breaks


def layout(tokens: list[str], columns: int = COLUMNS) -> list[tuple[int, int, str]]:
    """(line, column, text) per token: wrapped at ``columns`` characters and after newline tokens."""
    out, line, col = [], 0, 0
    for token in tokens:
        text, breaks = shown(token)
        text = text if len(text) <= columns else text[: columns - 1] + "…"
        if col and col + len(text) > columns:
            line, col = line + 1, 0
        out.append((line, col, text))
        col += len(text)
        if breaks:
            line, col = line + 1, 0
    return out


CLIP_PERCENTILE = 98


def scale(scores: list[float]) -> tuple[colors.Normalize, object]:
    """Symmetric colour scale ending at the 98th percentile of |score| (values beyond saturate)."""
    magnitudes = np.abs(np.asarray(scores, dtype=float))
    limit = float(np.percentile(magnitudes, CLIP_PERCENTILE)) if len(magnitudes) else 0.0
    limit = limit or float(magnitudes.max(initial=0.0)) or 1.0
    return colors.Normalize(-limit, limit, clip=True), matplotlib.colormaps[CMAP]


def beyond_scale(scores: list[float], norm: colors.Normalize) -> int:
    return sum(abs(s) > norm.vmax for s in scores)


def _ink(rgba) -> str:
    r, g, b = rgba[:3]
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"


def summary_lines(result: dict) -> list[str]:
    where = f"{result.get('run', '')} · {result.get('split', '')} example {result.get('index', '')}".strip(" ·")
    gap = (
        f"f(input) = {result['f_input']:.3f}, f(baseline) = {result['f_baseline']:.3f}, sum of attributions "
        f"= {result['attribution_sum']:.3f}, completeness gap {result['completeness_gap']:.3g} "
        f"({100 * result['completeness_gap_relative']:.2f}%)"
    )
    how = f"integrated gradients, {result['steps']} steps ({result['rule']}), {result['baseline']} baseline" + (
        f", {result['virtual_tokens']} virtual tokens <v0>.. first" if result.get("virtual_tokens") else ""
    )
    return [where, how, gap]


def heatmap_png(result: dict, path: Path, columns: int = COLUMNS) -> Path:
    placed = layout(result["tokens"], columns)
    lines = (placed[-1][0] + 1) if placed else 1
    output = textwrap.wrap("output (log p attributed): " + result["output"], columns + 10)[:6] or ["output: (empty)"]
    head_in = (len(output) + 4) * LINE_IN
    body_in, foot_in = lines * LINE_IN, 1.0
    width_in = columns * CHAR_IN + 0.6
    fig = plt.figure(figsize=(width_in, head_in + body_in + foot_in), dpi=130)
    h = head_in + body_in + foot_in
    head = fig.add_axes((0.3 / width_in, (h - head_in) / h, 1 - 0.6 / width_in, head_in / h))
    head.axis("off")
    where, how, gap = summary_lines(result)
    text = [(where, "bold"), (how, "normal"), (gap, "normal"), *((o, "normal") for o in output)]
    for i, (line, weight) in enumerate(text):
        head.text(
            0, 1 - (i + 0.7) / (len(text) + 1), line, fontsize=FONT, weight=weight, va="center", family="DejaVu Sans"
        )
    body = fig.add_axes((0.3 / width_in, foot_in / h, 1 - 0.6 / width_in, body_in / h))
    body.set_xlim(0, columns)
    body.set_ylim(lines, 0)
    body.axis("off")
    norm, cmap = scale(result["scores"])
    for (line, col, tok), score in zip(placed, result["scores"]):
        rgba = cmap(norm(score))
        # a hair of white between neighbours keeps token boundaries visible between similar colours
        body.add_patch(Rectangle((col + 0.04, line + 0.06), len(tok) - 0.08, 0.88, facecolor=rgba, edgecolor="none"))
        body.text(
            col, line + 0.5, tok, fontsize=FONT, family="DejaVu Sans Mono", va="center", ha="left", color=_ink(rgba)
        )
    bar = fig.add_axes((0.25, 0.5 / h, 0.5, 0.14 / h))
    beyond = beyond_scale(result["scores"], norm)
    cb = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), cax=bar, orientation="horizontal", extend="both" if beyond else "neither"
    )
    cb.set_label(
        "attribution to log p(output), nats: red raised it, blue lowered it"
        + (f"  ({beyond} beyond the scale)" if beyond else ""),
        fontsize=FONT - 1,
    )
    cb.ax.tick_params(labelsize=FONT - 2)
    fig.savefig(path, facecolor="white")
    plt.close(fig)
    return Path(path)


def _hex(rgba) -> str:
    return colors.to_hex(rgba, keep_alpha=False)


def attribution_html(result: dict) -> str:
    """A self-contained snippet (inline styles only, no script; every token escaped) for reports."""
    norm, cmap = scale(result["scores"])
    spans = []
    for token, score in zip(result["tokens"], result["scores"]):
        text, breaks = shown(token)
        rgba = cmap(norm(score))
        spans.append(
            f'<span title="{score:+.4f}" style="background:{_hex(rgba)};color:{_ink(rgba)}">'
            f"{html.escape(text)}</span>" + ("\n" if breaks else "")
        )
    limit, beyond = norm.vmax, beyond_scale(result["scores"], norm)
    legend = (
        f'<div style="display:flex;align-items:center;gap:.5em;margin-top:.4em;font-size:12px">'
        f'<span>{-limit:+.3g}</span><span style="width:12em;height:.8em;background:linear-gradient(to right,'
        f'{_hex(cmap(0.0))},{_hex(cmap(0.5))},{_hex(cmap(1.0))})"></span><span>{limit:+.3g}</span>'
        "<span>attribution to log p(output) (red raised it, blue lowered it"
        + (f"; {beyond} beyond the scale, scores in the tooltips" if beyond else "")
        + ")</span></div>"
    )
    caption = "<br>".join(html.escape(s) for s in summary_lines(result))
    return (
        f'<figure class="peftlab-attribution" style="margin:0">'
        f'<figcaption style="font-size:12px;margin-bottom:.4em">{caption}<br><b>output:</b> '
        f"{html.escape(result['output'])}</figcaption>"
        '<div style="font:13px/1.7 ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap;'
        f'word-break:break-word">{"".join(spans)}</div>{legend}</figure>\n'
    )
