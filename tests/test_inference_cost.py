"""Inference cost (inference_cost.py): ms per generated token and peak memory, batch 1 and 16,
unmerged and merged, in summary.json and the leaderboard."""

import json

import torch
import yaml

from peftlab.config import load_config
from peftlab.inference_cost import measure
from peftlab.methods import get_method
from peftlab.train import train
from tests.conftest import fixed_batch
from tests.methods.harness import logits, setup, train_steps


def test_merging_measures_a_copy_and_leaves_the_model_as_it_was():
    bb, method, cfg = setup("tiny-llama", "lora", rank=4, dropout=0.0)
    train_steps(bb, 3, 1e-2)
    batch = fixed_batch(bb)
    before = logits(bb.model, batch)
    cost = measure(bb, bb.model, method.merges(cfg), ["Repeat: cat", "Repeat: a dog"], max_new_tokens=6)
    assert torch.equal(logits(bb.model, batch), before)
    assert hasattr(bb.model, "merge_and_unload")  # still the peft model, adapter not folded in
    assert set(cost.unmerged) == set(cost.merged) == {"batch_1", "batch_16"}
    assert all(p.ms_per_token > 0 and p.peak_memory_bytes > 0 for p in cost.unmerged.values())
    assert cost.max_new_tokens == 6


def test_a_method_that_cannot_merge_is_measured_unmerged_only():
    bb, method, cfg = setup("tiny-t5", "prompt_tuning", num_virtual_tokens=4)
    assert not method.merges(cfg)
    cost = measure(bb, bb.model, method.merges(cfg), ["Repeat: cat"], max_new_tokens=4)
    assert cost.merged is None and cost.unmerged["batch_16"].ms_per_token > 0
    assert not get_method("peft").merges(get_method("peft").config_cls(type="P_TUNING", num_virtual_tokens=4))


def test_a_run_with_eval_inference_cost_records_it_and_the_leaderboard_shows_it(tmp_path, copy_task):
    from peftlab.report import write_report

    cfg = {
        "name": "copy-lora",
        "label": "lora",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 4},
        "task": copy_task,
        "train": {"max_steps": 2, "batch_size": 4},
        "eval": {"batch_size": 4, "inference_cost": True},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = train(load_config(path))
    inference = json.loads((run_dir / "summary.json").read_text())["inference"]
    assert inference["merged"]["batch_1"]["ms_per_token"] > 0
    assert inference["seconds"] > 0  # the measurement's own time, for the report's time split
    write_report(tmp_path / "runs")
    md = (tmp_path / "runs" / "leaderboard.md").read_text()
    assert next(line for line in md.splitlines() if line.startswith("| label")).endswith("| ms/token |")
    row = next(line for line in md.splitlines() if line.startswith("| lora"))
    assert row.split("|")[-2].strip() == f"{inference['merged']['batch_1']['ms_per_token']:.1f}"
    assert "inference latency: up to" not in md  # one label: no frontier to read
