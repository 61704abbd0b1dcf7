"""Work is never lost: a run killed with SIGKILL after a checkpoint and resumed ends exactly where an
uninterrupted run ends (CPU); a SIGTERM saves a checkpoint first; same config and seed, same run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from peftlab.config import load_config
from peftlab.rundir.runio import read_jsonl
from peftlab.training.train import train
from tests.reliability import lora_run

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def write_config(tmp_path: Path, copy_task: dict, name: str, **train_over) -> Path:
    train = {"max_steps": 300, "batch_size": 4, "lr": 5e-3, "eval_every": 150, "checkpoint_every": 20, **train_over}
    return lora_run.write_config(tmp_path, copy_task, name, train, {"batch_size": 4})


def outcome(run_dir: Path) -> tuple:
    losses = [r["train_loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train_loss" in r]
    vals = [r["validation"]["exact_match"] for r in read_jsonl(run_dir / "metrics.jsonl") if "validation" in r]
    summary = json.loads((run_dir / "summary.json").read_text())
    return losses, vals, summary["test"]["exact_match"], summary["steps"], summary["best_step"]


def adapter(run_dir: Path) -> dict:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while not path.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, copy_task):
    straight = train(load_config(write_config(tmp_path, copy_task, "straight")))

    path = write_config(tmp_path, copy_task, "killed")
    run_dir = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "peftlab", "train", str(path)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(run_dir / "checkpoint" / "state.json", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"
    state_path = run_dir / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    at = state["step"]
    assert 0 < at < 300
    # A resumed run keeps the peaks of its earlier part (a restarted process starts from zero).
    state["train_peak_memory_bytes"] = state["peak_memory_bytes"] = 10**13
    # ... and the time it took (the killed process's wall time, validations included).
    state["wall_seconds"], state["eval_seconds"] = 5000.0, 700.0
    state_path.write_text(json.dumps(state))

    out = subprocess.run(
        [sys.executable, "-m", "peftlab", "train", "--resume", str(run_dir)],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resuming from the checkpoint at step {at}" in out.stdout + out.stderr
    assert outcome(run_dir) == outcome(straight)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["peak_memory_bytes"] == summary["run_peak_memory_bytes"] == 10**13
    assert 5000 < summary["wall_seconds"] < 5000 + 600 and summary["eval_seconds"] > 700
    a, b = adapter(run_dir), adapter(straight)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_same_config_and_seed_give_identical_runs(tmp_path, copy_task):
    one = train(load_config(write_config(tmp_path, copy_task, "one", max_steps=12, eval_every=6)))
    two = train(load_config(write_config(tmp_path, copy_task, "two", max_steps=12, eval_every=6)))
    assert outcome(one) == outcome(two)
    assert all(adapter(one)[k].equal(adapter(two)[k]) for k in adapter(one))


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path, copy_task):
    path = write_config(tmp_path, copy_task, "term", max_steps=100000, eval_every=None, checkpoint_every=None)
    run_dir = tmp_path / "runs" / "term"
    proc = subprocess.Popen(
        [sys.executable, "-m", "peftlab", "train", str(path)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(run_dir / "metrics.jsonl", proc)  # training has started
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "stopped by SIGTERM" in output and f"peftlab train --resume {run_dir}" in " ".join(output.split())
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    logged = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train_loss" in r]
    assert state["step"] == logged[-1] > 0  # the checkpoint is the last finished step


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, copy_task, capsys):
    from peftlab.cli import main
    from peftlab.config import dump_config

    run_dir = tmp_path / "runs" / "nothing"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(load_config(write_config(tmp_path, copy_task, "nothing"))))
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run folder (no config.yaml)" in capsys.readouterr().err
