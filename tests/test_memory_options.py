"""train.gradient_checkpointing: recomputes each layer in backward, and trains the same curve."""

from __future__ import annotations

import json

import torch
import yaml

from peftlab.config import load_config
from peftlab.training.train import train


def lora_run(tmp_path, copy_task, name: str, dropout: float, **train_options):
    """The config file of a 3-step LoRA run on tiny-llama."""
    cfg = {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 4, "dropout": dropout},
        "task": copy_task,
        "train": {"max_steps": 3, "batch_size": 4, "lr": 1e-2, **train_options},
        "eval": {"max_validation": 1, "max_test": 1},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(tmp_path, copy_task, checkpointing: bool):
    """(train losses, attention calls that record a graph) of a 3-step LoRA run."""
    path = lora_run(tmp_path, copy_task, f"gc-{checkpointing}", 0.0, gradient_checkpointing=checkpointing)
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


def test_release_memory_holds_the_mmap_threshold_and_trains_the_same_bits(tmp_path, copy_task):
    """train.release_memory: the run process holds glibc's threshold (a subprocess: it lasts for the
    process) and its losses are the default's to the bit."""
    import subprocess
    import sys

    def config(name: str, release: bool):
        return lora_run(tmp_path, copy_task, name, 0.1, release_memory=release)

    def losses(run_dir):
        rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        return [r["train_loss"] for r in rows if "train_loss" in r]

    default = train(load_config(config("default", False)))
    spy = "import sys, peftlab.cpu_allocator as a, runpy; real = a.hold_mmap_threshold\n"
    spy += "def hold(*x):\n    done = real(*x); print('held:', done, file=sys.stderr); return done\n"
    spy += "a.hold_mmap_threshold = hold\nimport peftlab.training.run_model as r; r.hold_mmap_threshold = hold\n"
    spy += "sys.argv = ['peftlab', 'train', sys.argv[1]]; runpy.run_module('peftlab', run_name='__main__')"
    env = {k: v for k, v in __import__("os").environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run(
        [sys.executable, "-c", spy, str(config("released", True))], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "held: True" in out.stderr
    assert losses(tmp_path / "runs" / "released") == losses(default) and len(losses(default)) == 3
