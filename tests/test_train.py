"""End to end on tiny models: `train` writes the whole run folder; `eval` reproduces it."""

import csv
import json

import pytest
import yaml

from peftlab.config import load_config
from peftlab.evaluation.evaluate import eval_run
from peftlab.rundir.runio import read_jsonl
from peftlab.training.train import train


def make_config(tmp_path, copy_task, arch="tiny-llama", method=None, **train_over):
    cfg = {
        "name": f"copy-{arch}",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": arch},
        "method": method or {"name": "lora", "rank": 8, "dropout": 0.0},
        "task": copy_task,
        "train": {"max_steps": 12, "batch_size": 4, "lr": 1e-2, "eval_every": 6, **train_over},
        "eval": {"batch_size": 4},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-t5"])
def test_train_writes_the_run_folder_contract(tmp_path, copy_task, arch):
    run_dir = train(make_config(tmp_path, copy_task, arch))
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "predictions.csv",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
    ):
        assert (run_dir / name).is_file(), name
    records = read_jsonl(run_dir / "metrics.jsonl")
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert len(losses) == 12 and losses[-1] < losses[0]
    evals = [r for r in records if "validation" in r]
    assert [r["step"] for r in evals] == [0, 6, 12]  # untrained, every 6 steps and at the end
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["method"] == "lora" and s["steps"] == 12 and s["examples_seen"] == 48
    assert 0 < s["trainable_params"] < s["total_params"]
    assert s["trainable_pct"] == pytest.approx(100 * s["trainable_params"] / s["total_params"])
    assert s["adapter_bytes"] > 0 and s["train_seconds"] > 0 and s["peak_memory_bytes"] > 0
    assert s["versions"]["torch"] and s["hardware"]["cpu_count"]
    # Where the run's time went: every validation and the test are evaluation; the wall clock covers all
    validation_seconds = sum(r["validation"]["seconds"] for r in evals)
    assert s["eval_seconds"] == pytest.approx(validation_seconds + s["test"]["seconds"], abs=2e-3)
    assert s["wall_seconds"] > s["train_seconds"] + s["eval_seconds"]
    # the checkpoint kept is the best trained one on validation (the untrained point is the curve's start)
    best = max(evals[1:], key=lambda r: r["validation"]["exact_match"])
    assert s["best_step"] == best["step"]
    rows = list(csv.DictReader((run_dir / "predictions.csv").open()))
    assert [r["id"] for r in rows] == ["test-0", "test-1"]
    assert s["test"]["exact_match"] == pytest.approx(sum(r["prediction"] == r["reference"] for r in rows) / 2)
    # `peftlab eval` on the saved run (fresh base + adapter) reproduces the test predictions exactly
    eval_run(run_dir, "test")
    again = list(csv.DictReader((run_dir / "predictions_test.csv").open()))
    assert [r["prediction"] for r in again] == [r["prediction"] for r in rows]


def test_full_fine_tuning_run_and_zero_shot(tmp_path, copy_task):
    run_dir = train(make_config(tmp_path, copy_task, "tiny-gpt-neo", method={"name": "full"}, lr=3e-3, eval_every=None))
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["trainable_params"] == s["total_params"]
    assert (run_dir / "adapter" / "model.safetensors").is_file()
    cfg = make_config(tmp_path, copy_task, "tiny-gpt-neo", method={"name": "none"})
    zero = train(cfg.model_copy(update={"name": "zero"}))
    z = json.loads((zero / "summary.json").read_text())
    assert z["trainable_params"] == 0 and z["steps"] == 0 and z["train_seconds"] == 0


def test_existing_finished_run_is_not_overwritten(tmp_path, copy_task):
    from peftlab.errors import PeftlabError

    cfg = make_config(tmp_path, copy_task, max_steps=1, eval_every=None)
    run_dir = train(cfg)
    before = (run_dir / "summary.json").read_text()
    with pytest.raises(PeftlabError, match="already holds a finished run"):
        train(cfg)
    assert (run_dir / "summary.json").read_text() == before


def test_hybrid_components_train_at_their_own_learning_rates(tmp_path, copy_task):
    """lora + prompt_tuning: the soft prompt's group runs at prompt tuning's default lr, LoRA at LoRA's."""
    import torch

    from peftlab.methods import get_method

    seen = {}
    real_adamw = torch.optim.AdamW

    def spy(groups, **kw):
        opt = real_adamw(groups, **kw)
        seen.update({g.get("name"): g["lr"] for g in opt.param_groups})
        return opt

    method = {
        "name": "hybrid",
        "methods": [{"name": "lora", "rank": 4}, {"name": "prompt_tuning", "num_virtual_tokens": 4}],
    }
    torch.optim.AdamW = spy
    try:
        train(make_config(tmp_path, copy_task, method=method, max_steps=2, eval_every=None, lr=None))
    finally:
        torch.optim.AdamW = real_adamw
    assert seen == {"lora": get_method("lora").default_lr, "prompt_tuning": get_method("prompt_tuning").default_lr}


def test_tensorboard_tracker_logs_the_learning_curve(tmp_path, copy_task):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_config(tmp_path, copy_task, max_steps=4, eval_every=2)
    cfg.trackers = ["tensorboard"]
    run_dir = train(cfg)
    events = list(run_dir.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file in the run folder"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    loss = acc.Scalars("train_loss")
    assert [e.step for e in loss] == [1, 2, 3, 4]
    assert [e.step for e in acc.Scalars("validation/exact_match")] == [0, 2, 4]
