"""`peftlab demo`: zero-shot vs full fine-tuning vs LoRA on the built-in text-to-SQL task.

Each method runs in its own process (``python -m peftlab train``) so that its peak memory is its
own, not what an earlier method left in the allocator. A method whose run folder already holds a
finished run with the same config is not run again, so an interrupted demo resumes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from peftlab.config import dump_config, load_config
from peftlab.console import console
from peftlab.errors import PeftlabError
from peftlab.leaderboard import leaderboard_rows, print_examples, print_leaderboard, write_leaderboard
from peftlab.runio import finished_with_config

# Same model, task, prompt, batch and budget for every method; each gets its own learning rate
# (full fine-tuning needs a small one, LoRA a larger one).
DEMO_STEPS = 30
DEMO_METHODS: dict[str, dict] = {
    "zero_shot": {"method": {"name": "none"}},
    "full": {"method": {"name": "full"}, "train": {"lr": 5e-5}},
    "lora": {"method": {"name": "lora", "rank": 16, "alpha": 32, "dropout": 0.05}, "train": {"lr": 2e-3}},
}


def demo_configs(output_dir: Path, steps: int, model: str = "smollm2-135m") -> dict[str, dict]:
    out = {}
    for label, spec in DEMO_METHODS.items():
        cfg = {
            "name": f"sql_demo-{label}",
            "output_dir": str(output_dir),
            "seed": 0,
            "model": {"name": model},
            "method": spec["method"],
            "task": {"name": "sql_demo"},
            "train": {
                "max_steps": steps,
                "batch_size": 8,
                "warmup_ratio": 0.1,
                "schedule": "linear",
                "eval_every": max(steps // 2, 1),
                **spec.get("train", {}),
            },
            "eval": {"batch_size": 16, "max_validation": 32},
        }
        out[label] = cfg
    return out


def run_demo(
    output_dir: Path = Path("runs/demo"), steps: int | None = None, overwrite: bool = False, model: str = "smollm2-135m"
) -> list[dict]:
    steps = steps or DEMO_STEPS
    t0 = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    configs_dir = output_dir / "configs"
    configs_dir.mkdir(exist_ok=True)
    console.rule(
        f"[bold]peftlab demo[/bold]: zero-shot vs full fine-tuning vs LoRA, {model}, text-to-SQL, {steps} steps"
    )
    # Convert the bundled model once, here, so that no timed run pays for it.
    if model == "smollm2-135m":
        from peftlab.models.bundled import ensure_cached

        ensure_cached(model, log=console.print)
    run_dirs = []
    for label, raw in demo_configs(output_dir, steps, model).items():
        path = configs_dir / f"{label}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        cfg = load_config(path)
        run_dir = cfg.run_dir()
        run_dirs.append(run_dir)
        if not overwrite and all(finished_with_config(run_dir, dump_config(cfg))):
            console.print(f"[dim]{label}: finished run found in {run_dir}, not rerun (--overwrite reruns it)[/dim]")
            continue
        console.rule(f"{label}")
        cmd = [sys.executable, "-m", "peftlab", "train", str(path), "--overwrite"]
        if subprocess.run(cmd).returncode != 0:
            raise PeftlabError(f"demo: the '{label}' run failed (command: {' '.join(cmd)})")
    console.rule("side by side")
    print_examples(run_dirs, n=3)
    rows = leaderboard_rows(run_dirs)
    write_leaderboard(rows, output_dir)
    print_leaderboard(rows, title=f"sql_demo test set ({rows[0]['test_examples']} held-out questions)")
    console.print(f"run folders: {', '.join(str(d) for d in run_dirs)}")
    console.print(f"leaderboard: {output_dir / 'leaderboard.md'}   demo wall time: {time.perf_counter() - t0:.0f} s")
    return rows
