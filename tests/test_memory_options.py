"""train.gradient_checkpointing: recomputes each layer in backward, and trains the same curve."""

from __future__ import annotations

import json

import torch
import yaml

from peftlab.config import load_config
from peftlab.training.train import train


def run(tmp_path, copy_task, checkpointing: bool):
    """(train losses, attention calls that record a graph) of a 3-step LoRA run."""
    cfg = {
        "name": f"gc-{checkpointing}",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 4, "dropout": 0.0},
        "task": copy_task,
        "train": {"max_steps": 3, "batch_size": 4, "lr": 1e-2, "gradient_checkpointing": checkpointing},
        "eval": {"max_validation": 1, "max_test": 1},
    }
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    calls = []

    def count(module, args):
        # The attention inside each layer: the checkpointed layer reruns its forward, not its hooks.
        if type(module).__name__ == "LlamaAttention" and torch.is_grad_enabled():
            calls.append(1)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
    try:
        run_dir = train(load_config(path))
    finally:
        handle.remove()
    losses = [
        r["train_loss"]
        for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if "train_loss" in r
    ]
    return losses, len(calls)


def test_gradient_checkpointing_recomputes_layers_and_keeps_the_loss_curve(tmp_path, copy_task):
    plain, plain_calls = run(tmp_path, copy_task, False)
    checkpointed, checkpointed_calls = run(tmp_path, copy_task, True)
    layers, steps = 2, 3
    # The flop probe runs each layer twice with grad on (not checkpointed: in eval mode); then each
    # training step runs each layer once, plus once more in backward when checkpointing.
    assert checkpointed_calls - plain_calls == layers * steps
    assert plain_calls >= layers * steps
    assert len(plain) == 3
    for a, b in zip(plain, checkpointed, strict=True):
        assert abs(a - b) < 1e-5, (plain, checkpointed)
