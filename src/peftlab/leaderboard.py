"""A leaderboard of finished runs, read from their summary.json (never re-running anything)."""

from __future__ import annotations

import json
from pathlib import Path

from rich import box
from rich.table import Table

from peftlab.console import console
from peftlab.errors import PeftlabError
from peftlab.runio import atomic_write_text, read_predictions_csv

# Short headers so the table fits an 80-column terminal (CI logs are 80 wide).
COLUMNS = ("method", "test metric", "trainable", "%", "adapter", "train s", "peak mem")


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def leaderboard_rows(run_dirs: list[Path]) -> list[dict]:
    rows = []
    for d in run_dirs:
        path = Path(d) / "summary.json"
        if not path.is_file():
            raise PeftlabError(f"{d}: no summary.json (the run did not finish)")
        s = json.loads(path.read_text(encoding="utf-8"))
        rows.append(
            {
                "method": s["method"],
                "run": s["run"],
                "run_dir": str(d),
                "metric": s["primary_metric"],
                "score": s["test"][s["primary_metric"]],
                "test_examples": s["test_examples"],
                "trainable_params": s["trainable_params"],
                "trainable_pct": s["trainable_pct"],
                "adapter_bytes": s["adapter_bytes"],
                "train_seconds": s["train_seconds"],
                "peak_memory_bytes": s["peak_memory_bytes"],
            }
        )
    return sorted(rows, key=lambda r: -r["score"])


def _cells(r: dict) -> list[str]:
    return [
        r["method"],
        f"{r['score']:.3f}",
        f"{r['trainable_params']:,}",
        f"{r['trainable_pct']:.2f}%",
        human_bytes(r["adapter_bytes"]),
        f"{r['train_seconds']:.0f}",
        human_bytes(r["peak_memory_bytes"]),
    ]


def print_leaderboard(rows: list[dict], title: str) -> None:
    metric = rows[0]["metric"] if rows else "metric"
    table = Table(title=f"{title}: test {metric}", box=box.SIMPLE_HEAD)
    for col in COLUMNS:
        table.add_column(
            "test" if col == "test metric" else col, justify="left" if col == "method" else "right", no_wrap=True
        )
    for r in rows:
        table.add_row(*_cells(r))
    console.print(table)


def write_leaderboard(rows: list[dict], out_dir: Path) -> None:
    metric = rows[0]["metric"] if rows else "metric"
    header = [metric if c == "test metric" else c for c in COLUMNS]
    header.append("run folder")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(r) + [r["run_dir"]]) + " |" for r in rows]
    atomic_write_text(out_dir / "leaderboard.md", "\n".join(lines) + "\n")
    atomic_write_text(out_dir / "leaderboard.json", json.dumps(rows, indent=2) + "\n")


def print_examples(run_dirs: list[Path], n: int = 3) -> None:
    """Side by side: the first n test examples, the reference, and every method's prediction."""
    preds = {Path(d).name: read_predictions_csv(Path(d) / "predictions.csv")[:n] for d in run_dirs}
    first = next(iter(preds.values()))
    for i, row in enumerate(first):
        console.print(f"[bold]test example {row['id']}[/bold]: {row['input']}")
        console.print(f"  [green]reference[/green]  {row['reference']}")
        for name, rows in preds.items():
            console.print(f"  [cyan]{name}[/cyan]  {rows[i]['prediction'] or '(empty)'}")
