"""AdaLoRA through peftlab's loop: the rank allocator runs, the regulariser is peft's, resume is exact."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from peftlab.config import MethodConfig, load_config
from peftlab.errors import PeftlabError
from peftlab.methods import method_options
from peftlab.methods.adalora import loop_hooks, orthogonal_regularizer
from peftlab.rundir.runio import read_jsonl
from peftlab.training.train import train
from tests.conftest import fixed_batch
from tests.methods.harness import logits, setup

# 12 steps: full rank (4) for 2, shrinking to 1 per layer by step 8, then fixed for the last 4.
ADALORA = {"type": "ADALORA", "init_r": 4, "target_r": 1, "tinit": 2, "tfinal": 4, "deltaT": 1, "total_step": 12}


def config(tmp_path, copy_task, name: str, **train_over):
    cfg = {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "seed": 1,
        "model": {"name": "tiny-llama"},
        "method": {"name": "peft", "target_modules": ["q_proj", "v_proj"], **ADALORA},
        "task": copy_task,
        "train": {"max_steps": 12, "batch_size": 4, "lr": 1e-2, "eval_every": 6, **train_over},
        "eval": {"batch_size": 4, "max_validation": 2, "max_test": 2},
        "trackers": [],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def kept_ranks(adapter: dict) -> list[int]:
    return [int((t != 0).sum()) for n, t in adapter.items() if "lora_E" in n]


def test_the_allocator_prunes_to_the_target_rank_in_peftlabs_loop(tmp_path, copy_task):
    run_dir = train(config(tmp_path, copy_task, "ada"))
    losses = [r["train_loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train_loss" in r]
    assert len(losses) == 12 and losses[-1] < losses[0]
    # peft saves the pruned ranks (rank_pattern), so the adapter holds exactly the budget: target_r per layer
    ranks = kept_ranks(load_file(run_dir / "adapter" / "adapter_model.safetensors"))
    assert ranks and sum(ranks) == ADALORA["target_r"] * len(ranks) and max(ranks) < ADALORA["init_r"]
    # validated at 0 (curve only), 6 (ranks not final: 6 <= 12 - 4) and 12: only step 12 may be kept
    validated = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "validation" in r]
    assert validated == [0, 6, 12]
    assert json.loads((run_dir / "summary.json").read_text())["best_step"] == 12


def test_the_regulariser_is_what_peft_adds_to_a_loss_it_computes():
    bb, _, _ = setup("tiny-llama", "peft", **ADALORA)
    tuner = bb.model.base_model
    with torch.no_grad():
        for n, p in bb.model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # peft starts lora_B at zero... and lora_A random: both terms nonzero now
    batch = fixed_batch(bb)  # with labels: peft adds its regulariser to the model's own loss
    config = tuner.peft_config["default"]
    with torch.no_grad():
        config.orth_reg_weight = 0.0
        plain = bb.model(**batch).loss
        config.orth_reg_weight = 0.5
        with_reg = bb.model(**batch).loss
        ours = orthogonal_regularizer(tuner)
    assert ours > 0
    torch.testing.assert_close(ours, with_reg - plain)


def test_resume_after_an_interruption_equals_the_uninterrupted_run(tmp_path, copy_task, monkeypatch):
    straight = train(config(tmp_path, copy_task, "straight"))

    import peftlab.training.train as loop

    real, calls = loop.optimizer_step, []

    def dies_at_step_8(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:  # after the step-6 checkpoint, during the rank schedule
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "optimizer_step", dies_at_step_8)
    cfg = config(tmp_path, copy_task, "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert load_file(cfg.run_dir() / "checkpoint" / "method.safetensors")  # the allocator's state was saved
    monkeypatch.setattr(loop, "optimizer_step", real)
    resumed = train(cfg, resume=True)

    def losses(d):
        return [r["train_loss"] for r in read_jsonl(d / "metrics.jsonl") if "train_loss" in r]

    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-6, abs=1e-7)
    a, b = (load_file(d / "adapter" / "adapter_model.safetensors") for d in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_save_then_load_reproduces_the_logits_after_pruning(tmp_path):
    bb, method, cfg = setup("tiny-llama", "peft", **ADALORA)
    hooks = loop_hooks(bb.model)
    opt = torch.optim.AdamW([p for p in bb.model.parameters() if p.requires_grad], lr=1e-2)
    batch = fixed_batch(bb)
    labels = batch.pop("labels")  # the loss from the logits, as peftlab's loop: peft then adds no regulariser
    for step in range(12):  # the loop's order: loss + regulariser, step, allocator, zero_grad
        out = bb.model(**batch).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        (loss + hooks.extra_loss()).backward()
        opt.step()
        hooks.after_optimizer_step(step)
        opt.zero_grad()
    assert bb.model.peft_config["default"].rank_pattern  # the allocator pruned
    # No labels from here either: peft's AdaLoRA forward computes its regulariser whenever the output has a
    # loss, and a model loaded for inference has no trainable adapter to compute it for (peft 0.21 raises).
    expected = logits(bb.model.eval(), batch)
    method.save(bb.model, tmp_path / "adapter")
    from peftlab.models.tiny import tiny_model

    loaded = method.load(tiny_model("tiny-llama")[0], tmp_path / "adapter", cfg).eval()
    assert (logits(loaded, batch) - expected).abs().max().item() <= 1e-5


def test_adalora_needs_its_schedule_and_cannot_join_a_hybrid():
    with pytest.raises(PeftlabError, match="total_step"):
        method_options(MethodConfig(name="peft", type="ADALORA"))
    hybrid = {"name": "hybrid", "methods": [{"name": "peft", **ADALORA}, {"name": "prompt_tuning"}]}
    with pytest.raises(PeftlabError, match=r"methods\[0\]\.type: ADALORA cannot be a hybrid component"):
        method_options(MethodConfig.model_validate(hybrid))
