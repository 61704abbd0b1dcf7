"""Scaling past one process: `accelerate launch --num_processes 2` (gloo on CPU) trains the same
curve as one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from safetensors.torch import load_file

from peftlab.config import load_config
from peftlab.training.train import train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def accelerate_launch(config: Path, processes: int) -> subprocess.CompletedProcess:
    """`accelerate launch` of `peftlab train CONFIG` on the CPU in ``processes`` processes (gloo)."""
    launcher = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    flags = ["--multi_gpu", "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no"]
    flags += ["--dynamo_backend", "no", "--main_process_port", str(free_port())]
    return subprocess.run(
        [str(launcher), "launch", *flags, "-m", "peftlab", "train", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_two_processes_train_the_loss_curve_of_one_with_the_same_global_batch(tmp_path, copy_task):
    base = {
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 4, "dropout": 0.0},  # no dropout: processes draw different masks
        "task": copy_task,
        "train": {"max_steps": 6, "lr": 1e-2, "eval_every": 3},
        "eval": {"batch_size": 4},
    }
    one = {**base, "name": "one", "train": {**base["train"], "batch_size": 4}}
    two = {**base, "name": "two", "train": {**base["train"], "batch_size": 2}}  # per process: 2 x 2 = 4
    for cfg in (one, two):
        (tmp_path / f"{cfg['name']}.yaml").write_text(yaml.safe_dump(cfg))
    single = train(load_config(tmp_path / "one.yaml"))

    done = accelerate_launch(tmp_path / "two.yaml", processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(2 processes)" in done.stderr
    double = tmp_path / "runs" / "two"

    a, b = records(single), records(double)
    assert [(r["step"], r["examples"], r["tokens"], r["flops"]) for r in a] == [
        (r["step"], r["examples"], r["tokens"], r["flops"]) for r in b
    ]  # each line once: only rank 0 writes
    losses_a = [r["train_loss"] for r in a if "train_loss" in r]
    losses_b = [r["train_loss"] for r in b if "train_loss" in r]
    assert len(losses_a) == 6 and losses_a[-1] < losses_a[0]  # it learns
    for x, y in zip(losses_a, losses_b, strict=True):
        assert abs(x - y) < 1e-4 * max(1.0, abs(x)), (losses_a, losses_b)
    summary_a = json.loads((single / "summary.json").read_text())
    summary_b = json.loads((double / "summary.json").read_text())
    assert summary_b["processes"] == 2 and summary_a["processes"] == 1
    assert summary_a["examples_seen"] == summary_b["examples_seen"] == 24
    adapter_a = load_file(str(single / "adapter" / "adapter_model.safetensors"))
    adapter_b = load_file(str(double / "adapter" / "adapter_model.safetensors"))
    assert adapter_a.keys() == adapter_b.keys()
    for name in adapter_a:
        assert (adapter_a[name] - adapter_b[name]).abs().max() < 1e-4, name


def test_gradient_accumulation_trains_the_curve_of_one_big_batch(tmp_path, copy_task):
    """The loss of a step is its labelled tokens' mean over all micro-batches (not a mean of
    micro-batch means), so batch 2 x grad_accum 2 follows batch 4 x 1."""
    curves = []
    for name, batch, accum in (("big", 4, 1), ("accumulated", 2, 2)):
        cfg = {
            "name": name,
            "output_dir": str(tmp_path / "runs"),
            "model": {"name": "tiny-gpt-neo"},
            "method": {"name": "lora", "rank": 4, "dropout": 0.0},
            "task": copy_task,
            "train": {"max_steps": 5, "batch_size": batch, "grad_accum": accum, "lr": 1e-2},
            "eval": {"max_validation": 1, "max_test": 1},
        }
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        run_dir = train(load_config(tmp_path / f"{name}.yaml"))
        curves.append([r["train_loss"] for r in records(run_dir) if "train_loss" in r])
    big, accumulated = curves
    assert len(big) == 5 and big[-1] < big[0]
    for x, y in zip(big, accumulated, strict=True):
        assert abs(x - y) < 1e-5, (big, accumulated)
