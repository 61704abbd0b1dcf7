"""Resuming a FLOP-budget run is exact: the loop draws each step before it runs (to know its cost),
and a checkpoint still restarts the data order at the first step not yet trained."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

import peftlab.training.train as train_module
from peftlab.config import load_config
from peftlab.rundir.runio import read_jsonl
from peftlab.training.train import train
from tests.reliability import lora_run


def config(tmp_path, copy_task, name: str, **train_over):
    train = {"batch_size": 2, "lr": 5e-3, "checkpoint_every": 2, **train_over}
    eval_ = {"batch_size": 4, "max_validation": 1, "max_test": 1}
    return load_config(lora_run.write_config(tmp_path, copy_task, name, train, eval_))


def outcome(run_dir) -> tuple:
    losses = [
        (r["step"], r["flops"], r["lr"], r["train_loss"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "lr" in r
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    return losses, summary["steps"], summary["budget"], {k: v.tolist() for k, v in weights.items()}


def test_a_flop_budget_run_interrupted_after_a_checkpoint_resumes_exactly(tmp_path, copy_task, monkeypatch):
    marks = [0] + [
        r["flops"]
        for r in read_jsonl(train(config(tmp_path, copy_task, "ref", max_steps=8)) / "metrics.jsonl")
        if "lr" in r
    ]
    budget = marks[7] + 0.3 * (marks[8] - marks[7])  # ends after step 7, short of the budget
    straight = train(config(tmp_path, copy_task, "straight", max_flops=budget))

    save = train_module.save_checkpoint

    def save_then_crash(loop, state, memory):
        save(loop, state, memory)
        if state.step == 4:
            raise KeyboardInterrupt("killed after the checkpoint of step 4")

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_crash)
    cfg = config(tmp_path, copy_task, "resumed", max_flops=budget)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(train_module, "save_checkpoint", save)
    resumed = train(cfg, resume=True, require_checkpoint=True)
    assert outcome(resumed) == outcome(straight)
    assert outcome(straight)[1] == 7
