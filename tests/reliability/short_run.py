"""The short LoRA run the disk and corrupt-file tests stop and resume: a checkpoint every 2 steps and at
each of its 2 validations (steps 5 and 10), so checkpoints land at steps 2, 4, 5, 6 and 8."""

from __future__ import annotations

import json

from safetensors.torch import load_file

from peftlab.rundir.runio import read_jsonl
from tests.reliability import lora_run


def config_path(tmp_path, copy_task, name: str):
    train = {"max_steps": 10, "batch_size": 2, "lr": 5e-3, "checkpoint_every": 2, "evals": 2}
    eval_ = {"batch_size": 4, "max_validation": 1, "max_test": 1}
    return lora_run.write_config(tmp_path, copy_task, name, train, eval_)


def scores(result: dict | None) -> dict:
    """A validation's or the test's scores without their seconds (wall time: no two runs share it)."""
    return {k: v for k, v in (result or {}).items() if k != "seconds"}


def outcome(run_dir) -> tuple:
    """The learning curve, steps, test scores and adapter weights: what an exact resume reproduces."""
    curve = [
        (r["step"], r.get("train_loss"), scores(r.get("validation"))) for r in read_jsonl(run_dir / "metrics.jsonl")
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    return curve, summary["steps"], scores(summary["test"]), {k: v.tolist() for k, v in weights.items()}


def said(text: str, *phrases) -> bool:
    """Every phrase (a path, words) is in the terminal output, whatever the line wrapping."""
    flat = "".join(text.split())
    return all("".join(str(p).split()) in flat for p in phrases)
