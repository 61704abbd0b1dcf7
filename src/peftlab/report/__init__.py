"""`peftlab report DIR`: leaderboard, learning curves, Pareto plots and a static HTML page.

DIR is a comparison folder; its immediate subfolders with a summary.json are the runs. Nothing is
re-run: everything is read from the run folders. Written into DIR, each file atomically:

    leaderboard.md / .csv / .json   one row per label: mean ± std over seeds, costs, tie verdict
                                    (leaderboard.md also lists a learning-rate search, lr_search/)
    plots/<task>-curve-*.png        validation metric vs FLOPs / seconds / examples
    plots/<task>-pareto-*.png       test metric vs trainable params / FLOPs / peak memory
    report.html                     all of the above in one self-contained file

A several-model comparison folder (compare's `models: [...]`; its models.json names each model's
sub-folder) is reported from its sub-folders' runs: one leaderboard per model, and the cross-model
table (report/cross_model.py) first, also as cross_models.md / .json.

``write_report`` is the entry point for other commands (``peftlab compare`` calls it);
``print_overview`` is the terminal's short view (``peftlab demo`` prints it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from peftlab.comparison.lr_choice import Choice, found
from peftlab.console import console
from peftlab.errors import PeftlabError
from peftlab.report import cross_model_view, general, lr_table
from peftlab.report.aggregate import Comparison, compare_runs
from peftlab.report.cross_model import CrossModel, cross_models
from peftlab.report.cross_model_plot import rank_plot
from peftlab.report.examples import DEFAULT_EXAMPLES, available, print_examples, side_by_side
from peftlab.report.html import render
from peftlab.report.overlap import overlap_notes
from peftlab.report.plots import comparison_plots, label_colors
from peftlab.report.runs import load_runs
from peftlab.report.tables import print_tables, write_tables
from peftlab.rundir.models_index import read_index
from peftlab.rundir.runio import atomic_write_bytes, atomic_write_text, inside

__all__ = ["DEFAULT_EXAMPLES", "Report", "build_report", "print_overview", "print_report", "write_report"]


@dataclass
class Report:
    folder: Path
    comparisons: list[Comparison]
    parts: list[dict]  # per comparison: comp, plots, examples, notes, colors (what html.render draws)
    searches: list[Choice] = field(default_factory=list)  # learning-rate searches (lr_search/)
    across: list[CrossModel] = field(default_factory=list)  # a several-model comparison's cross-model tables

    def write(self) -> Path:
        """Write tables, plot files and report.html into the folder; returns report.html's path."""
        write_tables(self.comparisons, self.folder, lr_table.markdown(self.searches))
        written = set()
        for part in self.parts:
            for p in part["plots"]:
                if p.png:
                    path = self.folder / "plots" / f"{_file_name(part['comp'].title)}-{p.name}.png"
                    inside(self.folder, path, f"task name {part['comp'].title!r}")  # a name is not a path
                    atomic_write_bytes(path, p.png)
                    written.add(path)
        _remove_stale_plots(self.folder / "plots", written)
        rank_plots = [rank_plot(cm) for cm in self.across]  # drawn once: a file in plots/ and the page's figure
        first = [
            (f"across-{i}", "Across models", cross_model_view.section(cm, plot))
            for i, (cm, plot) in enumerate(zip(self.across, rank_plots))
        ]
        for cm, plot in zip(self.across, rank_plots):
            if plot.png:
                atomic_write_bytes(self.folder / "plots" / f"{_file_name(cm.task)}-{plot.name}.png", plot.png)
        if self.across:
            atomic_write_text(self.folder / "cross_models.md", cross_model_view.markdown(self.across))
            atomic_write_text(
                self.folder / "cross_models.json", json.dumps(cross_model_view.records(self.across), indent=2) + "\n"
            )
        out = self.folder / "report.html"
        atomic_write_text(out, render(self.folder.resolve().name, self.parts, self.searches, first))
        return out


def build_report(folder: Path, examples: list[int] | None = None) -> Report:
    """Read the runs in ``folder`` and compute everything the report shows (writes nothing)."""
    folder = Path(folder)
    index = read_index(folder)
    runs = load_runs(folder) if index is None else [r for _, sub in index for r in load_runs(sub)]
    comparisons = compare_runs(runs)
    _check_examples(comparisons, examples)
    parts = []
    for comp in comparisons:
        n = available(comp)
        wanted = list(examples) if examples is not None else list(DEFAULT_EXAMPLES)
        notes = overlap_notes(comp)
        if examples is not None and any(i >= n for i in wanted):
            skipped = ", ".join(str(i) for i in wanted if i >= n)
            notes.append(f"Example(s) {skipped} skipped: {comp.task} has {n} test predictions (indices 0..{n - 1}).")
        parts.append(
            {
                "comp": comp,
                "plots": comparison_plots(comp) + general.plot(comp),
                "colors": label_colors(comp),
                "examples": side_by_side(comp, wanted),
                "notes": notes,
            }
        )
    searches = found(folder) if index is None else []  # each model's own report lists its search
    return Report(folder, comparisons, parts, searches, cross_models(comparisons))


def write_report(dir: Path, examples: list[int] | None = None) -> Path:
    """Build and write the report of the comparison folder ``dir``; returns the path of report.html.

    ``examples``: test-example indices (rows of predictions.csv) to show side by side; default
    DEFAULT_EXAMPLES, limited to those that exist.
    """
    return build_report(Path(dir), examples).write()


def print_report(report: Report) -> None:
    """The leaderboard(s) as rich tables on the console, then what holds across models."""
    print_tables(report.comparisons)
    for cm in report.across:
        console.print(f"[bold]{cm.task} across models[/bold]")
        for line in cross_model_view.verdict_lines(cm):
            console.print(f"- {line}")


def print_overview(folder: Path, examples: list[int]) -> None:
    """The test examples at ``examples`` side by side, then the leaderboard(s), on the console.

    Reads the runs only: no plots are drawn and nothing is written (``write_report`` does that).
    """
    comparisons = compare_runs(load_runs(Path(folder)))
    for comp in comparisons:
        print_examples(side_by_side(comp, examples))
    print_tables(comparisons)


def _check_examples(comparisons: list[Comparison], examples: list[int] | None) -> None:
    if examples is None:
        return
    if any(i < 0 for i in examples):
        raise PeftlabError(f"--examples: indices count from 0 (got {', '.join(map(str, examples))})")
    largest = max((available(c) for c in comparisons), default=0)
    if examples and all(i >= largest for i in examples):
        raise PeftlabError(
            f"--examples {','.join(map(str, examples))}: out of range; the runs have "
            f"{largest} test predictions (indices 0..{largest - 1})"
            if largest
            else "--examples: the runs have no predictions.csv"
        )


def _file_name(text: str) -> str:
    """A task name as a file name: path separators and odd characters become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "task"


def _remove_stale_plots(plots_dir: Path, written: set[Path]) -> None:
    """A plot skipped this time (e.g. its data went away) must not linger from an earlier report."""
    if plots_dir.is_dir():
        for p in plots_dir.glob("*.png"):
            if p not in written and re.fullmatch(r".+-(curve|pareto)-[a-z_]+\.png", p.name):
                p.unlink()
