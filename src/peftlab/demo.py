"""`peftlab demo`: zero-shot vs full fine-tuning vs LoRA on the built-in text-to-SQL task.

The demo is a `peftlab compare` experiment, built here so that ``--steps`` and the model can
change it. It is written into the demo's folder as compare.yaml (so `peftlab compare` reruns it
as it stands) and run by compare's own code: one process per run, finished runs with the same
config skipped, the bundled model converted once, the report written at the end. The terminal
then shows three test examples side by side and the leaderboard.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from peftlab.compare import compare
from peftlab.console import console
from peftlab.report import print_overview
from peftlab.runio import atomic_write_text

DEMO_STEPS = 30
# Same model, task, prompt, batch and budget for every method, and each at its own best learning rate:
# compare's lr search (on by default) tries its default (`peftlab methods`) x1/3, x1 and x3 to a third
# of the budget and goes on with the best; tuning one side's lr and not the other's would decide the
# headline. Labels keep the run folders' names short.
DEMO_METHODS: list[dict] = [
    {"label": "zero_shot", "name": "none"},
    {"label": "full", "name": "full"},
    {"label": "lora", "name": "lora", "rank": 16, "alpha": 32, "dropout": 0.05},
]
DEMO_EXAMPLES = [0, 1, 2]  # test questions shown side by side, in the terminal and in report.html


def demo_experiment(folder: Path, steps: int, model: str = "smollm2-135m") -> dict:
    """The compare experiment (as its YAML mapping) whose comparison folder is ``folder``."""
    return {
        "name": folder.name,
        "output_dir": str(folder.parent),
        "model": {"name": model},
        "task": {"name": "sql_demo"},
        "budget": {"steps": steps},
        "evals": 2,  # half way and at the end
        "seeds": [0],
        "trackers": [],
        "train": {"batch_size": 8, "warmup_ratio": 0.1, "schedule": "linear"},
        "eval": {"batch_size": 16, "max_validation": 32},
        "examples": DEMO_EXAMPLES,
        "methods": DEMO_METHODS,
    }


def run_demo(
    output_dir: Path = Path("runs/demo"), steps: int | None = None, overwrite: bool = False, model: str = "smollm2-135m"
) -> Path:
    """Run (or resume) the demo into ``output_dir``, print its summary; returns the folder."""
    steps = steps or DEMO_STEPS
    t0 = time.perf_counter()
    folder = Path(output_dir)
    if folder.name in ("", ".", ".."):  # compare's folder is output_dir/name: the name must be a real one
        folder = folder.resolve()
    console.rule(
        f"[bold]peftlab demo[/bold]: zero-shot vs full fine-tuning vs LoRA, {model}, text-to-SQL, {steps} steps"
    )
    experiment = folder / "compare.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(experiment, yaml.safe_dump(demo_experiment(folder, steps, model), sort_keys=False))
    compare(experiment, overwrite=overwrite)
    console.rule("side by side")
    print_overview(folder, DEMO_EXAMPLES)
    console.print(
        f"report: {folder / 'report.html'} (leaderboard.md/.csv/.json beside it)   "
        f"demo wall time: {time.perf_counter() - t0:.0f} s"
    )
    return folder
