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

from peftlab.comparison.compare import compare
from peftlab.console import console
from peftlab.report import print_overview
from peftlab.rundir.runio import atomic_write_text

DEMO_STEPS = 30
# Same model, task, prompt, batch and budget for every method, and each at its own best learning rate
# (compare's lr search: its default from `peftlab methods` x1/3, x1 and x3 to a third of the budget, the
# best goes on); tuning one side's lr and not the other's would decide the headline. Labels keep the run
# folders' names short.
DEMO_METHODS: list[dict] = [
    {"label": "zero_shot", "name": "none"},
    {"label": "full", "name": "full"},
    {"label": "lora", "name": "lora", "rank": 16, "alpha": 32, "dropout": 0.05},
]
DEMO_EXAMPLES = [0, 1, 2]  # test questions shown side by side, in the terminal and in report.html
DEMO_MODEL = "smollm2-135m"
# The lrs compare's default search chose for exactly this experiment (bundled model, sql_demo, 30 steps,
# seed 0): bench/RESULTS.md, "The lr search's cost on the demo's task". The search itself costs 1.8x the
# demo's wall time (354 s against ~220 s), past the 5 minutes `make demo` is sized for, and no smaller
# grid or earlier rung fits (each grid value costs ~10 s beyond its training). So the demo trains each
# method at its searched lr, as a one-value lr_grid (compare.yaml and the terminal say so), and `--lr-search` redoes the
# search. Any other model or step count has no recorded choice and is searched.
DEMO_SEARCHED_LR = {"full": 5.0e-5, "lora": 3.0e-3}


def demo_methods(steps: int, model: str, lr_search: bool) -> list[dict]:
    """The demo's method entries; each carries its recorded lr when that record applies."""
    if lr_search or steps != DEMO_STEPS or model != DEMO_MODEL:
        return [dict(m) for m in DEMO_METHODS]
    return [
        {**m, "lr_grid": [DEMO_SEARCHED_LR[m["label"]]]} if m["label"] in DEMO_SEARCHED_LR else dict(m)
        for m in DEMO_METHODS
    ]


def demo_experiment(folder: Path, steps: int, model: str = DEMO_MODEL, lr_search: bool = False) -> dict:
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
        "eval": {"max_validation": 32},
        "examples": DEMO_EXAMPLES,
        "methods": demo_methods(steps, model, lr_search),
    }


def write_experiment(folder: Path, steps: int, model: str, lr_search: bool) -> Path:
    """folder/compare.yaml, headed by the command that reruns it and where its lrs came from."""
    experiment = folder / "compare.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    spec = demo_experiment(folder, steps, model, lr_search)
    recorded = {m["label"]: m["lr_grid"][0] for m in spec["methods"] if "lr_grid" in m}
    note = ""
    if recorded:
        note = (
            "lr: "
            + ", ".join(f"{label} {lr:g}" for label, lr in recorded.items())
            + ", chosen by compare's lr search on this experiment (bench/RESULTS.md);"
            " `peftlab demo --lr-search` redoes it"
        )
        console.print(note)
    header = f"# peftlab compare {experiment}\n" + (f"# {note}\n" if note else "")
    atomic_write_text(experiment, header + yaml.safe_dump(spec, sort_keys=False))
    return experiment


def run_demo(
    output_dir: Path = Path("runs/demo"),
    steps: int | None = None,
    overwrite: bool = False,
    model: str = DEMO_MODEL,
    lr_search: bool = False,
) -> Path:
    """Run (or resume) the demo into ``output_dir``, print its summary; returns the folder.

    ``lr_search``: search every method's lr (x1/3, x1, x3 by successive halving) instead of training
    at the lrs that search chose for the default demo (DEMO_SEARCHED_LR)."""
    steps = steps or DEMO_STEPS
    t0 = time.perf_counter()
    folder = Path(output_dir)
    if folder.name in ("", ".", ".."):  # compare's folder is output_dir/name: the name must be a real one
        folder = folder.resolve()
    console.rule(
        f"[bold]peftlab demo[/bold]: zero-shot vs full fine-tuning vs LoRA, {model}, text-to-SQL, {steps} steps"
    )
    experiment = write_experiment(folder, steps, model, lr_search)
    compare(experiment, overwrite=overwrite)
    console.rule("side by side")
    print_overview(folder, DEMO_EXAMPLES)
    console.print(
        f"report: {folder / 'report.html'} (leaderboard.md/.csv/.json beside it)   "
        f"demo wall time: {time.perf_counter() - t0:.0f} s"
    )
    return folder
