"""`peftlab data`: the statistics of peftlab.inspect.data as PNGs, a JSON file and terminal tables."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from peftlab.console import console
from peftlab.inspect.data import data_source, data_stats
from peftlab.models import load_backbone
from peftlab.rundir.runio import write_json
from peftlab.tasks.base import build_task


def _hist(ax, lengths: list[int], limit: int, title: str, over: int) -> None:
    ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="#4C72B0", edgecolor="white")
    ax.axvline(limit, color="#C44E52", linestyle="--", linewidth=1.5)
    pct = 100 * over / max(len(lengths), 1)
    ax.text(
        limit,
        ax.get_ylim()[1] * 0.95,
        f" limit {limit}\n {over} over ({pct:.1f}%)",
        color="#C44E52",
        va="top",
        fontsize=9,
    )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("tokens")
    ax.set_ylabel("examples")


def write_data_plots(stats: dict, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    split, paths = stats["split"], []
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    _hist(
        a,
        stats["input_lengths"],
        stats["max_source_tokens"],
        "input: task prompt (max_source_tokens)",
        stats["inputs_over_limit"],
    )
    _hist(
        b,
        stats["target_lengths"],
        stats["max_target_tokens"],
        "target incl. EOS (max_target_tokens)",
        stats["targets_over_limit"],
    )
    fig.suptitle(f"{stats['task']} {split} ({stats['examples']:,} examples), tokens of {stats['model']}")
    fig.tight_layout()
    paths.append(folder / f"lengths-{split}.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    if stats["labels"]:
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(stats["labels"]) + 2), 3.5), dpi=110)
        ax.bar(list(stats["labels"]), list(stats["labels"].values()), color="#55A868")
        what = "label" if stats["output_type"] == "classify" else "answer"
        ax.set_title(f"{stats['task']} {split}: examples per {what}")
        ax.set_ylabel("examples")
        fig.tight_layout()
        paths.append(folder / f"labels-{split}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def print_data_stats(stats: dict) -> None:
    table = Table(title=f"{stats['task']} {stats['split']}: {stats['examples']:,} examples, tokens of {stats['model']}")
    for col in ("", "min", "median", "mean", "p95", "max", "limit", "over the limit"):
        table.add_column(col, justify="left" if not col else "right")
    for name, key, limit, over in (
        ("input (task prompt)", "input_tokens", "max_source_tokens", "inputs_over_limit"),
        ("target (+EOS)", "target_tokens", "max_target_tokens", "targets_over_limit"),
    ):
        s = stats[key]
        pct = 100 * stats[over] / stats["examples"]
        table.add_row(
            name,
            str(s["min"]),
            f"{s['median']:g}",
            f"{s['mean']:.1f}",
            f"{s['p95']:.0f}",
            str(s["max"]),
            str(stats[limit]),
            f"{stats[over]:,} ({pct:.1f}%)",
        )
    console.print(table)
    console.print(
        f"The chat template / special tokens add {stats['template_tokens']} tokens to each input; "
        "inputs over the limit lose their middle, targets over it their end."
    )
    if stats["labels"]:
        labels = Table(title="examples per label" if stats["output_type"] == "classify" else "examples per answer")
        labels.add_column("label" if stats["output_type"] == "classify" else "answer")
        labels.add_column("examples", justify="right")
        labels.add_column("share", justify="right")
        for label, n in stats["labels"].items():
            labels.add_row(escape(label), f"{n:,}", f"{100 * n / stats['examples']:.1f}%")
        console.print(labels)
    for ex in stats["formatted"]:
        body = f"{escape(ex['input'])}[bold green]{escape(ex['target'])}[/bold green]"
        console.print(
            Panel(body, title=f"example {escape(ex['id'])} as the model sees it (target in green)", title_align="left")
        )


def inspect_data(
    target: str,
    model: str | None = None,
    split: str = "train",
    data_dir: str | None = None,
    out: str | Path | None = None,
    n_examples: int = 3,
) -> tuple[dict, list[Path]]:
    """Compute, print and write (PNGs + data-<split>.json into ``out``, default runs/data-<task>/)."""
    task_cfg, model_cfg = data_source(target, model, data_dir)
    task = build_task(task_cfg)
    backbone = load_backbone(model_cfg, device=torch.device("cpu"), log=lambda *_: None)
    stats = {**data_stats(backbone, task_cfg, task, split, n_examples), "model": model_cfg.name}  # not a cache path
    folder = Path(out) if out is not None else Path("runs") / f"data-{task.name}"
    paths = write_data_plots(stats, folder)
    write_json(folder / f"data-{split}.json", stats)
    print_data_stats(stats)
    return stats, [*paths, folder / f"data-{split}.json"]
