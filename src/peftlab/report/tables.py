"""The leaderboard as text: cells for humans (md, terminal, HTML) and raw numbers for machines (csv, json)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rich import box
from rich.table import Table

from peftlab.console import console
from peftlab.humanize import human_bytes, human_flops
from peftlab.report import general, lr_cost, measures
from peftlab.report.aggregate import Comparison, Entry
from peftlab.report.costs import cost_notes, time_split
from peftlab.report.top_group import TIE_RULE
from peftlab.report.verdict import verdict
from peftlab.rundir.runio import atomic_write_text

HEADER = ("label", "test", "n", "vs best", "trainable", "%", "adapter", "FLOPs", "budget", "train s", "peak mem")
TERMINAL_HEADER = ("label", "test", "n", "vs best", "trainable", "adapter", "FLOPs", "train s", "peak mem")


def score_cell(e: Entry) -> str:
    return f"{e.mean:.3f}" if e.std is None else f"{e.mean:.3f} ± {e.std:.3f}"


def verdict_cell(e: Entry) -> str:
    """'best', or where the label stands against the top group (top_group.py) with Δ (how far behind
    the best, in metric units) and the simultaneous 95% interval of Δ (or why there is none)."""
    t = e.tie
    if t.verdict == "best":
        return "best"
    gap = f" Δ{t.delta:.3f}" if t.delta is not None else ""
    how = f"CI [{t.ci[0]:.3f}, {t.ci[1]:.3f}]" if t.ci else t.basis
    return f"{t.word}{gap} ({how})"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def budget_cell(used: float | None) -> str:
    """What a label spent of its budget (mean over seeds), e.g. '99.6%'; '-' when not recorded."""
    return "-" if used is None else f"{100 * used:.1f}%"


def cells(e: Entry) -> list[str]:
    c = e.costs
    return [
        e.shown_label,
        score_cell(e),
        str(e.n),
        verdict_cell(e),
        _num(c["trainable_params"], ",.0f"),
        _num(c["trainable_pct"], ".2f") + ("%" if c["trainable_pct"] is not None else ""),
        human_bytes(c["adapter_bytes"]),
        human_flops(c["flops"]),
        budget_cell(c["budget_used"]),
        _num(c["train_seconds"], ".0f"),
        human_bytes(c["peak_memory_bytes"]),
    ]


def records(comparisons: list[Comparison]) -> list[dict]:
    """One flat record per label: what leaderboard.csv and leaderboard.json hold."""
    out = []
    for comp in comparisons:
        for rank, e in enumerate(comp.entries, 1):
            t = e.tie
            out.append(
                {
                    "task": comp.task,
                    "metric": comp.metric,
                    "higher_is_better": comp.higher_is_better,
                    "rank": rank,
                    "label": e.label,
                    "mean": e.mean,
                    "std": e.std,
                    "n_seeds": e.n,
                    "seeds": e.seeds,
                    "verdict": t.verdict,
                    "verdict_text": t.word,
                    "top_group": t.in_top_group,
                    "tie_basis": t.basis,
                    "delta_to_best": t.delta,
                    "ci_low": t.ci[0] if t.ci else None,
                    "ci_high": t.ci[1] if t.ci else None,
                    "se_of_delta": t.se,
                    "seeds_of_pair": t.seeds,
                    "sample_size_advice": t.advice,
                    "family_labels": comp.family.labels if comp.family else None,
                    "critical_value": comp.family.critical if comp.family else None,
                    "covers_training_noise": comp.family.covers_training_noise if comp.family else None,
                    **{k: _plain(v) for k, v in e.costs.items()},
                    "peak_memory_kind": e.memory_kind,
                    "runs": [r.name for r in e.runs],
                    "run_dirs": [str(r.dir) for r in e.runs],
                    "override": e.override,
                    "deviations": e.deviations,
                    **general.record(comp, e),
                    "model": comp.model,  # last: older columns keep their place for scripts that read them
                }
            )
    return out


def _plain(v: float | None) -> float | int | None:
    """Means of integer counts (parameters, bytes) stay integers in csv/json."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def markdown(comparisons: list[Comparison]) -> str:
    parts = []
    for comp in comparisons:
        direction = "higher is better" if comp.higher_is_better else "lower is better"
        extra, search = measures.present(comp), lr_cost.search_cells(comp)
        header = HEADER + tuple(m.column for m in extra) + ((lr_cost.COLUMN,) if search else ())
        header += tuple(general.header(comp))
        parts.append(f"## {comp.title}: test {comp.metric} ({direction})\n")
        parts += [f"- {line}" for line in verdict(comp)] + [""]
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join("---" if h == "label" else "---:" for h in header) + "|")
        rows = [cells(e) + [measures.cell(m, e) for m in extra] for e in comp.entries]
        rows = [row + ([search.get(e.label, "-")] if search else []) for row, e in zip(rows, comp.entries)]
        rows = [row + general.cells(comp, e) for row, e in zip(rows, comp.entries)]
        parts += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        parts.append("")
        parts += [f"{lr_cost.NOTE}\n"] if search else []
        parts += [f"{line}\n" for line in family_notes(comp) + override_notes(comp) + cost_notes(comp)]
        if split := time_split(comp):
            parts.append(f"{split}.\n")
    parts.append("Δ: how far behind the best (metric units); CI: simultaneous 95% interval of Δ (top group).\n")
    parts.append("budget: what the label spent of its training budget (mean over seeds).\n")
    shown = {m.key: m for c in comparisons for m in measures.present(c)}
    parts += [f"{m.note}\n" for m in measures.MEASURES if m.key in shown]
    parts += [f"{general.NOTE}\n"] if any(general.present(c) for c in comparisons) else []
    parts.append(TIE_RULE)
    return "\n".join(parts) + "\n"


def family_notes(comp: Comparison) -> list[str]:
    """What the top group rests on (and, with fewer than 3 seeds, what it does not cover), then one line
    per top-group label behind the best: how many seeds / test examples would separate its gap."""
    lines = [comp.family.note()] if comp.family and comp.family.note() else []
    best = comp.entries[0].label if comp.entries else ""
    for e in comp.entries[1:]:
        if e.tie.advice:
            lines.append(f"Sample size: {e.label} vs {best}, Δ{e.tie.delta:.3f}: {e.tie.advice}.")
    return lines


def override_notes(comp: Comparison) -> list[str]:
    """One line per label whose budget or scoring settings differ from the comparison's."""
    return [f"† {e.label}: {e.note}" for e in comp.entries if e.note]


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
    return buf.getvalue()


def write_tables(comparisons: list[Comparison], out_dir: Path, extra_markdown: str = "") -> None:
    rows = records(comparisons)
    atomic_write_text(
        out_dir / "leaderboard.md", markdown(comparisons) + (f"\n{extra_markdown}" if extra_markdown else "")
    )
    atomic_write_text(out_dir / "leaderboard.csv", to_csv(rows))
    atomic_write_text(out_dir / "leaderboard.json", json.dumps(rows, indent=2) + "\n")


def human_count(n: float | None) -> str:
    return "-" if n is None else human_flops(n).replace(" ", "")


def terminal_cells(e: Entry) -> list[str]:
    """A narrower row than the markdown one: short verdict, compact counts (TERMINAL_HEADER's columns)."""
    t, c = e.tie, e.costs
    verdict = "top" if t.verdict == "tie" else t.word  # the terminal's narrow column
    if t.verdict != "best" and t.delta is not None:
        verdict += f" Δ{t.delta:.3f}"
    return [
        e.shown_label,
        score_cell(e),
        str(e.n),
        verdict,
        human_count(c["trainable_params"]),
        human_bytes(c["adapter_bytes"]),
        human_count(c["flops"]),
        _num(c["train_seconds"], ".0f"),
        human_bytes(c["peak_memory_bytes"]),
    ]


def spent_range(comp: Comparison) -> str:
    """', budget spent 99.2-100.4%' over the labels that record it ('' when none does)."""
    used = [e.costs["budget_used"] for e in comp.entries if e.costs["budget_used"] is not None]
    if not used:
        return ""
    low, high = budget_cell(min(used)), budget_cell(max(used))
    return f", budget spent {low}" if low == high else f", budget spent {low[:-1]}-{high}"


def print_tables(comparisons: list[Comparison]) -> None:
    """The leaderboard(s) on the console: 80 columns wide with one seed per label (the demo's), at
    most 100 with several (CI logs are 100 wide)."""
    for comp in comparisons:
        # With one seed everywhere the n column is all 1s: the title says so instead, which is
        # what keeps the table inside 80 columns.
        one_seed = all(e.n == 1 for e in comp.entries)
        keep = [i for i, h in enumerate(TERMINAL_HEADER) if not (one_seed and h == "n")]
        direction = "higher is better" if comp.higher_is_better else "lower is better"
        # The terminal has no room for a budget column: the title gives the range of what labels spent.
        seeds = ", one seed" if one_seed else ""
        table = Table(
            title=f"{comp.title}: test {comp.metric} ({direction}{seeds}{spent_range(comp)})",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            pad_edge=False,
            show_edge=False,
            collapse_padding=True,
        )
        for i in keep:
            h = TERMINAL_HEADER[i]
            table.add_column(h, justify="left" if h in ("label", "vs best") else "right", no_wrap=h != "label")
        for e in comp.entries:
            cells = terminal_cells(e)
            table.add_row(*(cells[i] for i in keep), style="bold" if e.tie.in_top_group else None)
        console.print(table)
        intervals = [f"{e.shown_label} [{e.tie.ci[0]:.3f}, {e.tie.ci[1]:.3f}]" for e in comp.entries if e.tie.ci]
        if intervals:  # no room for them in the table's width: one line under it
            console.print(f"95% interval of Δ: {'; '.join(intervals)}", markup=False, highlight=False)
        for line in family_notes(comp):
            console.print(line, markup=False, highlight=False)
        for m in measures.present(comp):  # nor for the measures runs record when asked
            values = "; ".join(f"{e.shown_label} {measures.cell(m, e)}" for e in comp.entries)
            console.print(f"{m.axis}: {values}", markup=False, highlight=False)
        if search := lr_cost.search_cells(comp):  # the lr search's cost with one run, as multiples of one run
            values = "; ".join(f"{label} {cell}" for label, cell in search.items())
            console.print(f"{lr_cost.COLUMN} (with one run): {values}", markup=False, highlight=False)
        for line in verdict(comp):  # the answer in words, read off the Pareto fronts
            console.print(line, markup=False, highlight=False)
        for line in override_notes(comp):
            console.print(line, markup=False)
        if split := time_split(comp):
            console.print(split, markup=False, highlight=False)
    console.print(
        "[dim]bold: the top group, labels the data cannot separate from the best (the simultaneous 95% interval "
        "of Δ over all labels, a paired bootstrap over seeds and test examples, includes 0); Δ: behind the best[/dim]"
    )
