"""Atomic writes: a crash in the middle of writing leaves the previous file (or checkpoint) intact."""

from __future__ import annotations

import json
import os

import pytest
import torch

from peftlab.rundir.runio import write_json
from peftlab.training import checkpoint


class Crash(Exception):
    pass


def test_crash_during_a_write_keeps_the_old_summary_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_json(path, {"test": {"rougeL": 0.25}})

    def crash(fd):
        raise Crash("power cut")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(Crash):
        write_json(path, {"test": {"rougeL": 0.99}, "big": "x" * 100000})
    assert json.loads(path.read_text()) == {"test": {"rougeL": 0.25}}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_crash_during_a_checkpoint_keeps_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    weights = {"w": torch.nn.Parameter(torch.ones(3))}
    opt = torch.optim.AdamW(weights.values(), lr=0.1)
    weights["w"].grad = torch.ones(3)
    opt.step()
    checkpoint.save(tmp_path, weights, opt, None, {"step": 1})

    import peftlab.training.checkpoint as ck

    real = ck.save_file
    calls = {"n": 0}

    def crash_on_second(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash("killed while writing optimizer.safetensors")
        return real(*args, **kw)

    monkeypatch.setattr(ck, "save_file", crash_on_second)
    with torch.no_grad():
        weights["w"].add_(5)
    with pytest.raises(Crash):
        checkpoint.save(tmp_path, weights, opt, None, {"step": 2})
    monkeypatch.setattr(ck, "save_file", real)

    fresh = {"w": torch.nn.Parameter(torch.zeros(3))}
    info, best = checkpoint.load(tmp_path, fresh, torch.optim.AdamW(fresh.values(), lr=0.1))
    assert info["step"] == 1 and best is None
    assert fresh["w"].detach().allclose(torch.full((3,), 0.9), atol=1e-3)  # the step-1 weights, not +5


def test_a_torn_last_metrics_line_is_dropped_not_fatal(tmp_path):
    from peftlab.rundir.runio import append_jsonl, read_jsonl

    path = tmp_path / "metrics.jsonl"
    for step in range(1, 4):
        append_jsonl(path, {"step": step, "train_loss": 1.0 / step})
    with path.open("a") as f:
        f.write('{"step": 4, "train_lo')  # killed in the middle of a write
    assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3]


@pytest.mark.parametrize("name", ["full", "none"])
def test_a_crash_while_saving_a_methods_metadata_keeps_the_previous_file(tmp_path, monkeypatch, name):
    import importlib

    from peftlab.methods.tensors import META

    save = importlib.import_module(f"peftlab.methods.{name}").save
    model = torch.nn.Linear(2, 2)
    save(model, tmp_path)

    def crash(fd):
        raise Crash("power cut")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(Crash):  # written through the atomic writer, which syncs before it renames
        save(model, tmp_path)
    assert json.loads((tmp_path / META).read_text()) == {"method": name}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind
