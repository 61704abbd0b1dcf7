"""Where a LoRA training step's memory goes: SmolLM2-135M, LoRA r=16 on q/k/v/o (as
bench/train_throughput.py), batch 8, the first --examples DialogSum training dialogues (the
baseline's prompt, prompts cut at 384 tokens, targets at 128), in length-sorted batches.

    .venv/bin/python bench/memory_profile.py [--precisions fp32,bf16] [--examples 64]   # ~3 min, 2 cores

Each precision runs in a fresh process (so the process's high-water mark is its own). Per step it
records, with peftlab's own loss (the head on labelled positions only, models/causal.py):
  saved    bytes of the tensors autograd keeps for backward (the activations), by where they were
           made (torch.autograd.graph.saved_tensors_hooks; storages counted once; weights excluded)
  rss      the process's resident memory after loading, and its high-water mark after each step
and the fixed part: weights (by dtype), trainable parameters with gradients and AdamW's two moments.
The step order is the longest batch first, then the rest: growth of the high-water mark after the
longest batch is allocator fragmentation across steps of other shapes, not a larger working set.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
from collections import defaultdict

import psutil
import torch
from machine import machine, versions

from peftlab.config import ModelConfig, TaskConfig
from peftlab.methods import get_method, trainable_parameters
from peftlab.models import load_backbone
from peftlab.precision import compute_dtype, store_frozen_linears
from peftlab.tasks.base import build_task
from peftlab.tasks.catalog import resolve_task

PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary:"  # the baseline's
# where a saved tensor was made: the innermost module's name, first matching pattern wins
WHERE = [
    ("lora A/B", r"lora_"),
    ("attention q/k/v/o projections", r"self_attn\.[qkvo]_proj"),
    ("attention core (rope, softmax, weighted sum)", r"self_attn$"),
    ("MLP (gate/up/down projections, SiLU)", r"\.mlp"),
    ("RMS norms", r"norm$"),
    ("embeddings", r"embed_tokens$"),
    ("output head (labelled positions)", r"lm_head$"),
]
GB = 2**30


def rss_peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class SavedTensors:
    """Sums the storages autograd saves for backward, by the innermost module running at the time."""

    def __init__(self, model: torch.nn.Module):
        self.stack: list[str] = ["loss (outside the model)"]
        self.by_where: dict[str, int] = defaultdict(int)
        self.seen: set[int] = set()
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        for name, m in model.named_modules():
            m.register_forward_pre_hook(lambda mod, args, n=name: self._enter(n))
            m.register_forward_hook(lambda mod, args, out: self._leave())

    def _enter(self, name: str) -> None:  # a hook returning something would replace the input/output
        self.stack.append(name)

    def _leave(self) -> None:
        self.stack.pop()

    def where(self) -> str:
        name = self.stack[-1]
        return next((label for label, pattern in WHERE if re.search(pattern, name)), "other")

    def pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.seen and ptr not in self.params:
            self.seen.add(ptr)
            self.by_where[self.where()] += storage.nbytes()
        return t

    def reset(self) -> None:
        self.by_where.clear()
        self.seen.clear()


def batches(bb, n: int, size: int = 8) -> list[dict]:
    cfg = resolve_task({"name": "dialogsum", "data_dir": "../shared/data/dialogsum", "input_template": PROMPT}, "m")
    task = build_task(TaskConfig.model_validate({**cfg, "max_source_tokens": 384, "max_target_tokens": 128}))
    feats = [bb.encode(e.prompt, e.target, 384, 128) for e in task.split("train")[:n]]
    feats.sort(key=lambda f: len(f["input_ids"]), reverse=True)  # the longest batch first
    return [bb.collate(feats[i : i + size]) for i in range(0, len(feats), size)]


def profile(precision: str, n: int) -> dict:
    """One process: load, apply LoRA, train one pass; the figures of every step."""
    rss0 = psutil.Process().memory_info().rss / GB
    bb = load_backbone(ModelConfig(name="smollm2-135m"), log=lambda *a: None)
    bb.model.float()
    bb.compute_dtype = compute_dtype(precision, "cpu")
    lora = get_method("lora")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    bb.model = lora.apply(bb.model, lora.config_cls(rank=16, alpha=32, dropout=0.05, target_modules=targets))
    store_frozen_linears(bb.model, bb.compute_dtype)
    model, head = bb.model, bb.model.get_output_embeddings()
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params.values(), lr=2e-4)
    weights: dict[str, float] = defaultdict(float)
    for p in {p.untyped_storage().data_ptr(): p for p in model.parameters()}.values():
        weights[str(p.dtype).removeprefix("torch.")] += p.numel() * p.element_size() / GB
    trainable = sum(p.numel() * 4 for p in params.values()) / GB  # fp32
    saved, steps = SavedTensors(model), []
    data = batches(bb, n)
    rss_loaded = psutil.Process().memory_info().rss / GB
    for b in data:
        saved.reset()
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t), bb.numerics():
            loss = bb.kind.loss_sum(model, head, b)
        held = psutil.Process().memory_info().rss / GB
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens = int(b["attention_mask"].sum())
        steps.append(
            {
                "shape": list(b["input_ids"].shape),
                "real_tokens": tokens,
                "saved_bytes": dict(saved.by_where),
                "rss_after_forward_gb": held,
                "rss_peak_gb": rss_peak_gb(),
            }
        )
    fixed = {"weights_gb": dict(weights), "trainable_grads_adam_gb": 4 * trainable}
    return {"precision": precision, "rss_start_gb": rss0, "rss_loaded_gb": rss_loaded, **fixed, "steps": steps}


def report(results: list[dict]) -> None:
    print(f"machine: {json.dumps(machine())}\nversions: {json.dumps(versions())}\n")
    for r in results:
        first = r["steps"][0]
        total = sum(first["saved_bytes"].values()) / GB
        print(f"### {r['precision']}: the longest batch {first['shape']} ({first['real_tokens']} real tokens)\n")
        print("| part | GB |\n|---|---:|")
        for dtype, gb in r["weights_gb"].items():
            print(f"| weights, {dtype} | {gb:.2f} |")
        print(f"| trainable: fp32 weights, gradients, AdamW moments | {r['trainable_grads_adam_gb']:.3f} |")
        for where, nbytes in sorted(first["saved_bytes"].items(), key=lambda kv: -kv[1]):
            print(f"| saved for backward: {where} | {nbytes / GB:.2f} |")
        print(f"| saved for backward, all | **{total:.2f}** |")
        print(f"| process after loading (python, torch, tokenizer, data, weights) | {r['rss_loaded_gb']:.2f} |")
        print(f"| process high-water mark after this step | **{first['rss_peak_gb']:.2f}** |")
        peaks = ", ".join(f"{s['rss_peak_gb']:.2f}" for s in r["steps"])
        print(f"\nhigh-water mark after each step (longest batch first): {peaks} GB\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--examples", type=int, default=64)
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one precision, JSON out
    a = p.parse_args()
    if a.one:
        print(json.dumps(profile(a.one, a.examples)))
        return
    results = []
    for precision in a.precisions.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--one", precision, "--examples", str(a.examples)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    report(results)


if __name__ == "__main__":
    main()
