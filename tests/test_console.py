"""Progress in a log file: where output is not a terminal, long phases print a plain line (phase,
done/total, rate, ETA) at least every PEFTLAB_PROGRESS_SECONDS while they run, not only at the end."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import yaml
from rich.console import Console

from peftlab.console import LogProgress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def log_progress(interval: float = 30.0):
    out = io.StringIO()
    clock = Clock()
    return LogProgress(Console(file=out, width=200), interval, clock=clock), out, clock


def test_a_line_every_interval_while_a_phase_runs_and_one_at_its_end():
    bar, out, clock = log_progress()
    tid = bar.add_task("zero-shot test", total=1600, info="")
    clock.now = 10.0
    bar.advance(tid, 100)
    assert out.getvalue() == ""  # 10 s in: no line due yet
    clock.now = 30.0
    bar.advance(tid, 50)  # 150 done in 30 s: 5/s, 1450 left -> 290 s
    assert out.getvalue().splitlines() == ["zero-shot test: 150/1600, 5/s, elapsed 0:30, eta 4:50"]
    clock.now = 45.0
    bar.tick()  # 15 s after the last line: none
    clock.now = 61.0
    bar.tick()  # the heartbeat: a line although no batch finished
    clock.now = 400.0
    bar.update(tid, completed=1600, info="done scoring")
    lines = out.getvalue().splitlines()
    assert lines[1] == "zero-shot test: 150/1600, 2.46/s, elapsed 1:01, eta 9:50"  # 1450 / (150 / 61) = 589.7 s
    assert lines[2] == "zero-shot test: 1600/1600 (done scoring), 4/s, elapsed 6:40, done"
    assert len(lines) == 3


def test_a_phase_left_early_says_where_it_stopped_and_rate_counts_only_new_work():
    bar, out, clock = log_progress()
    with bar:
        tid = bar.add_task("train", total=100, completed=40, info="")  # resumed at 40%
        clock.now = 20.0
        bar.update(tid, completed=50, info="step 12 loss 1.2345")
    assert out.getvalue().splitlines() == ["train: 50/100 (step 12 loss 1.2345), 0.5/s, elapsed 0:20, stopped"]


def test_a_training_run_writes_progress_lines_to_a_redirected_log(tmp_path, copy_task):
    cfg = {
        "name": "logged",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 4, "dropout": 0.0},
        "task": copy_task,
        "train": {"max_steps": 6, "batch_size": 4, "lr": 1e-2, "eval_every": 3},
        "eval": {"batch_size": 4},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PEFTLAB_PROGRESS_SECONDS": "0"}  # every update: a line
    with open(tmp_path / "run.log", "w") as log:
        subprocess.run(
            [sys.executable, "-m", "peftlab", "train", str(tmp_path / "cfg.yaml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=True,
        )
    text = (tmp_path / "run.log").read_text()
    train_lines = [ln for ln in text.splitlines() if ln.startswith("train: ")]
    assert len(train_lines) >= 6, text  # one per step at least, not one at the end
    assert any(", eta " in ln and "loss" in ln for ln in train_lines), train_lines
    assert "\x1b[" not in text  # plain lines, no terminal control codes
