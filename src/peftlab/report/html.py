"""report.html: one self-contained page (inline CSS, PNGs as data URIs, no network).

Every piece of text that comes from data (labels, inputs, predictions, configs) goes through
``esc``: predictions are model output and may contain markup. A Content-Security-Policy meta
tag forbids any non-data resource and every script but peftlab's own explorer (admitted by its
SHA-256 hash, report/explorer.py), so even a missed escape could not run or fetch.
"""

from __future__ import annotations

import base64
import html
import re
import time

import yaml

from peftlab.comparison.lr_choice import Choice
from peftlab.humanize import human_bytes
from peftlab.report import explorer, general, lr_table, measures
from peftlab.report.aggregate import Comparison, Entry
from peftlab.report.costs import cost_notes
from peftlab.report.examples import Example
from peftlab.report.meta import budget, facts, hardware, models
from peftlab.report.plots import Plot
from peftlab.report.style import CSS
from peftlab.report.tables import (
    budget_cell,
    family_notes,
    human_flops,
    override_notes,
    score_cell,
)
from peftlab.report.top_group import TIE_RULE
from peftlab.report.verdict import verdict

CSP = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '{explorer.SCRIPT_HASH}'"
PREVIEW_CHARS = 90  # of the input's head and tail shown while collapsed
Section = tuple[str, str | None, str]  # (anchor id, nav title or None for no nav link, inner html)


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def page(title: str, header_html: str, sections: list[Section], footer: str) -> str:
    nav = "".join(f'<a href="#{esc(sid)}">{esc(name)}</a>' for sid, name, _ in sections if name)
    body = "".join(f'<section class="card" id="{esc(sid)}">{inner}</section>' for sid, _, inner in sections)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>"
        f'{header_html}<nav class="toc"><div class="wrap">{nav}</div></nav>'
        f'<main class="wrap">{body}</main><footer>{esc(footer)}</footer>{explorer.script_tag()}</body></html>\n'
    )


def header(title: str, items: list[tuple[str, str]]) -> str:
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in items)
    return (
        f'<header class="top"><div class="wrap"><div class="brand">peftlab report</div>'
        f'<h1>{esc(title)}</h1><dl class="facts">{dl}</dl></div></header>'
    )


def _badge(e: Entry) -> str:
    t = e.tie
    text = {"best": "best", "tie": "top group", "undecided": "undecided"}.get(t.verdict, t.word)
    how = ""
    if t.verdict != "best":
        gap = f"Δ {t.delta:.3f}" if t.delta is not None else ""
        how = f"{gap}, 95% CI [{t.ci[0]:.3f}, {t.ci[1]:.3f}]" if t.ci else f"{gap}, {t.basis}"
    klass = "worse" if t.verdict == "behind" else t.verdict
    return f'<span class="badge {esc(klass)}">{esc(text)}</span>' + (
        f'<span class="how">{esc(how)}</span>' if how else ""
    )


def leaderboard(comp: Comparison, colors: dict[str, str]) -> str:
    heads = [
        ("#", ""),
        ("label", "l"),
        (f"test {comp.metric}", ""),
        ("seeds", ""),
        ("vs best", "l"),
        ("trainable", ""),
        ("adapter", ""),
        ("FLOPs", ""),
        ("budget", ""),
        ("train s", ""),
        ("peak mem", ""),
    ]
    extra = measures.present(comp)
    heads += [(m.column, "") for m in extra] + [(h, "") for h in general.header(comp)]
    th = "".join(f'<th class="{c}">{esc(h)}</th>' for h, c in heads)
    best = comp.entries[0].mean if comp.entries else 0
    rows = []
    for i, e in enumerate(comp.entries, 1):
        c = e.costs
        # Bar length: score relative to the best (for lower-is-better metrics, best / score).
        ratio = (e.mean / best if comp.higher_is_better else best / e.mean) if best and e.mean else 0
        width = max(0.0, min(1.0, ratio)) * 100
        trainable = "-" if c["trainable_params"] is None else f"{c['trainable_params']:,.0f}"
        pct = "" if c["trainable_pct"] is None else f'<span class="pct">{c["trainable_pct"]:.2f}%</span>'
        swatch = colors.get(e.label, "#9ca3af")
        cells = [
            (str(i), ""),
            (f'<span class="swatch" style="background:{esc(swatch)}"></span>{esc(e.shown_label)}', "l"),
            (f'{esc(score_cell(e))}<span class="bar" style="width:{width:.1f}%"></span>', "score"),
            (str(e.n), ""),
            (_badge(e), "l verdict"),
            (esc(trainable) + pct, ""),
            (esc(human_bytes(c["adapter_bytes"])), ""),
            (esc(human_flops(c["flops"])), ""),
            (esc(budget_cell(c["budget_used"])), ""),
            (esc("-" if c["train_seconds"] is None else f"{c['train_seconds']:.0f}"), ""),
            (esc(human_bytes(c["peak_memory_bytes"])), ""),
        ]
        cells += [(esc(measures.cell(m, e)), "") for m in extra] + [(esc(c), "") for c in general.cells(comp, e)]
        klass = ' class="lead"' if e.tie.in_top_group else ""
        rows.append(f"<tr{klass}>" + "".join(f'<td class="{k}">{v}</td>' for v, k in cells) + "</tr>")
    kinds = sorted({k for e in comp.entries for k in e.memory_kind.split(", ") if k})
    return (
        f'<h2>Leaderboard<span class="sub">{esc(comp.title)} · test {esc(comp.metric)}, '
        f"{'higher' if comp.higher_is_better else 'lower'} is better</span></h2>"
        f'<ul class="verdict">{"".join(f"<li>{esc(line)}</li>" for line in verdict(comp))}</ul>'
        f'<div class="scroll"><table class="board"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody>'
        f'</table></div><p class="rule">Test score: mean ± std over seeds (sample std). Δ: how far behind the best. '
        f"Costs are means over seeds; budget is what was spent of the training budget; "
        f"trainable shows the parameter count and its share of the model; "
        f"peak memory is {esc(', '.join(kinds) or 'not recorded')}. {esc(TIE_RULE)}"
        f"{''.join('<br>' + esc(line) for line in family_notes(comp) + override_notes(comp) + cost_notes(comp))}</p>"
    )


def plots(comp: Comparison, figures: list[Plot]) -> str:
    drawn = [p for p in figures if p.png]
    skipped = [p for p in figures if not p.png]
    out = [f'<h2>Plots<span class="sub">{esc(comp.title)}</span></h2>']
    if drawn:
        figs = []
        for p in drawn:
            data = base64.b64encode(p.png).decode("ascii")
            note = f' <span class="warn">{esc(p.note)}</span>' if p.note else ""
            figs.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(p.title)}">'
                f"<figcaption>{esc(p.caption)}{note}</figcaption></figure>"
            )
        out.append(f'<div class="grid">{"".join(figs)}</div>')
    if skipped:
        items = "".join(f"<li><b>{esc(p.title)}</b>: {esc(p.note)}</li>" for p in skipped)
        out.append(f'<div class="skipped">Not drawn:<ul>{items}</ul></div>')
    return "".join(out)


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= 2 * PREVIEW_CHARS:
        return flat
    return f"{flat[:PREVIEW_CHARS]} … {flat[-PREVIEW_CHARS:]}"


def side_by_side(comp: Comparison, examples: list[Example], notes: list[str], colors: dict[str, str]) -> str:
    out = [
        f'<h2>Side by side<span class="sub">{esc(comp.title)} · test examples</span></h2>',
        (
            "<p class=\"note\">Each label's prediction (a label with several seeds shows its first seed's). "
            "Click the input to expand it.</p>"
        ),
    ]
    if not examples:
        out.append('<p class="note">No predictions.csv in these runs: nothing to show side by side.</p>')
    for ex in examples:
        refs = "".join(f"<pre>{esc(r)}</pre>" for r in ex.references)
        rows = []
        for o in ex.outputs:
            pred = (
                f"<pre>{esc(o.prediction)}</pre>"
                if o.prediction
                else f'<span class="empty">{"(empty)" if o.prediction == "" else "(no prediction for this id)"}</span>'
            )
            score = "" if o.score is None else f"{o.score:.3f}"
            swatch = f'<span class="swatch" style="background:{esc(colors.get(o.label, "#9ca3af"))}"></span>'
            rows.append(
                f'<tr><td class="who">{swatch}{esc(o.label)}</td><td>{pred}</td><td class="num">{esc(score)}</td></tr>'
            )
        out.append(
            f'<article class="example"><h3>test example #{ex.index}<span class="id">id {esc(ex.id)}</span></h3>'
            f'<details class="input"><summary><span class="lbl">input</span> <span class="preview">'
            f"{esc(_preview(ex.input))}</span></summary><pre>{esc(ex.input)}</pre></details>"
            f'<div class="refs"><span class="lbl">reference{"s" if len(ex.references) > 1 else ""}</span>{refs}</div>'
            f'<table class="outputs"><thead><tr><th class="l">label</th><th class="l">prediction</th>'
            f"<th>score</th></tr></thead><tbody>{''.join(rows)}</tbody></table></article>"
        )
    out += [f'<p class="note">{esc(n)}</p>' for n in notes]
    return "".join(out)


def run_details(comp: Comparison) -> str:
    heads = [
        "run",
        "label",
        "seed",
        "test",
        "best step",
        "budget",
        "lr",
        "train s",
        "tokens/s",
        "peak mem",
        "adapter",
        "FLOPs",
    ]
    runs = [(e, r) for e in comp.entries for r in e.runs]
    # The folder name only earns a column where it differs from the run's name.
    show_folder = any(r.dir.name != r.name for _, r in runs)
    if show_folder:
        heads.append("folder")
    left = {"run", "label", "budget", "folder"}
    th = "".join(f'<th class="{"l" if h in left else ""}">{esc(h)}</th>' for h in heads)
    rows, configs = [], []
    for e, r in runs:
        s = r.summary
        # The label, and the method behind it when the label does not say it (lora-r4 is a lora).
        label = e.label if s.method == e.label else f"{e.label} ({s.method})"
        vals = [
            r.name,
            label,
            r.seed,
            f"{r.score:.4f}",
            "-" if s.best_step is None else s.best_step,
            budget(r),
            _fmt(s.lr, "g"),
            _fmt(s.train_seconds, ".1f"),
            _fmt(s.train_tokens_per_s, ".0f"),
            human_bytes(s.peak_memory_bytes),
            human_bytes(s.adapter_bytes),
            human_flops(s.flops),
        ] + ([r.dir.name] if show_folder else [])
        rows.append(
            "<tr>"
            + "".join(f'<td class="{"l" if h in left else ""}">{esc(v)}</td>' for h, v in zip(heads, vals))
            + "</tr>"
        )
        if r.config:
            text = yaml.safe_dump(r.config, sort_keys=False, allow_unicode=True)
            configs.append(
                f'<details class="config"><summary>config.yaml of {esc(r.name)}</summary>'
                f"<pre>{esc(text)}</pre></details>"
            )
    return (
        f'<h2>Run details<span class="sub">{esc(comp.title)} · test {esc(comp.metric)}</span></h2>'
        f'<div class="scroll"><table class="details">'
        f"<thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{''.join(configs)}"
    )


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render(folder_name: str, parts: list[dict], searches: list[Choice] = (), first: list[Section] = ()) -> str:
    """parts: one dict per comparison with keys comp, plots, examples, notes, colors; searches: the
    comparison's learning-rate searches (lr_search.found); first: sections shown before the leaderboards
    (the cross-model table of a several-model comparison)."""
    multi = len(parts) > 1
    sections = list(first)
    for p in parts:
        comp = p["comp"]
        board = leaderboard(comp, p["colors"])
        if multi:  # the page header cannot hold every task's facts: each leaderboard states its own
            items = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in facts(comp) if k != "task")
            board = board.replace("</h2>", f'</h2><dl class="facts inline">{items}</dl>', 1)
        tag = f"-{slug(comp.title)}" if multi else ""
        # Several tasks: one nav link per task; one task: one per section.
        sections += [
            (f"leaderboard{tag}", comp.title if multi else "Leaderboard", board),
            (f"plots{tag}", None if multi else "Plots", plots(comp, p["plots"])),
            (f"explore{tag}", None if multi else "Explore", explorer.section(comp, p["colors"])),
            (
                f"examples{tag}",
                None if multi else "Side by side",
                side_by_side(comp, p["examples"], p["notes"], p["colors"]),
            ),
            (f"runs{tag}", None if multi else "Run details", run_details(comp)),
        ]
    if searches:
        sections.append(("lr-search", "LR search", lr_table.html(list(searches))))
    if multi:
        tasks = list(dict.fromkeys(p["comp"].task for p in parts))
        several = len({p["comp"].model for p in parts}) > 1
        title = f"{folder_name}: {len(parts)} {'leaderboards' if several else 'tasks'}"
        runs = [r for p in parts for r in p["comp"].runs]
        items = [
            ("tasks", ", ".join(tasks)),
            ("models", models(runs)),
            ("runs", str(len(runs))),
            ("hardware", hardware(runs)),
        ]
    else:
        comp = parts[0]["comp"]
        title = f"{comp.task}: {len(comp.entries)} methods compared"
        items = facts(comp)
    footer = f"peftlab report of {folder_name}, generated {time.strftime('%Y-%m-%d %H:%M')}"
    return page(f"peftlab report: {folder_name}", header(title, items), sections, footer)
