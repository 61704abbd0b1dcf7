"""Where a LoRA training step's memory goes: SmolLM2-135M, LoRA r=16 on q/k/v/o (as
bench/train_throughput.py), batch 8, the first --examples DialogSum training dialogues (the
baseline's prompt, prompts cut at 384 tokens, targets at 128), in length-sorted batches.

    .venv/bin/python bench/memory_profile.py [--precisions fp32,bf16] [--examples 64]   # ~3 min, 2 cores
    .venv/bin/python bench/memory_profile.py --examples 32 --dropout fused,unfused --trainer   # ~15 min
    .venv/bin/python bench/memory_profile.py --precisions fp32 --examples 48 --variant plain,swiglu,malloc,both

--dropout: `fused` is peftlab's LoRA (each dropout folded into its lora_A, methods/lora_dropout.py),
`unfused` is peft's own modules (dropout, then lora_A: a noise tensor and a dropped copy of the input
kept per projection). --trainer adds ../shared/bench/hf_baseline.py --recipe strong (Trainer + peft,
the same LoRA, fp32 on CPU) on the same first --examples dialogues: its whole process's peak RSS.
Each precision x dropout runs in a fresh process (so the process's high-water mark is its own). Per
step it records, with peftlab's own loss (the head on labelled positions only, models/causal.py):
  saved    bytes of the tensors autograd keeps for backward (the activations), by where they were
           made (torch.autograd.graph.saved_tensors_hooks; storages counted once; weights excluded)
  rss      the process's resident memory after loading, and its high-water mark after each step
  seconds  forward + backward + optimizer step (the table sums all but the first, a warm-up)
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
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil
import torch
from machine import machine, versions
from peft import get_peft_model

from peftlab.config import ModelConfig, TaskConfig
from peftlab.cpu_allocator import hold_mmap_threshold
from peftlab.measure.precision import compute_dtype, store_frozen_linears
from peftlab.methods import get_method, trainable_parameters
from peftlab.methods.lora import peft_config
from peftlab.models import load_backbone
from peftlab.models.swiglu import lean_swiglu
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


def apply_lora(model: torch.nn.Module, dropout: str) -> torch.nn.Module:
    """LoRA r16 on q/k/v/o with dropout 0.05: peftlab's (fused) or plain peft's (unfused)."""
    lora = get_method("lora")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    cfg = lora.config_cls(rank=16, alpha=32, dropout=0.05, target_modules=targets, fused_dropout=True)
    return lora.apply(model, cfg) if dropout == "fused" else get_peft_model(model, peft_config(model, cfg))


def profile(precision: str, n: int, dropout: str = "fused", variant: str = "swiglu") -> dict:
    """One process: load, apply LoRA, train one pass; the figures of every step."""
    if variant in ("malloc", "both"):
        hold_mmap_threshold()  # as train.release_memory does (cpu_allocator.py)
    rss0 = psutil.Process().memory_info().rss / GB
    bb = load_backbone(ModelConfig(name="smollm2-135m"), log=lambda *a: None)
    bb.model.float()
    if variant in ("swiglu", "both"):
        lean_swiglu(bb.model)  # as training does (training/run_model.prepare)
    bb.compute_dtype = compute_dtype(precision, "cpu")
    bb.model = apply_lora(bb.model, dropout)
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
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t), bb.numerics():
            loss = bb.kind.loss_sum(model, head, b)
        held = psutil.Process().memory_info().rss / GB
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - start  # the saved-tensor hook's bookkeeping included, alike for all
        tokens = int(b["attention_mask"].sum())
        steps.append(
            {
                "shape": list(b["input_ids"].shape),
                "real_tokens": tokens,
                "saved_bytes": dict(saved.by_where),
                "rss_after_forward_gb": held,
                "rss_peak_gb": rss_peak_gb(),
                "seconds": seconds,
            }
        )
    fixed = {"weights_gb": dict(weights), "trainable_grads_adam_gb": 4 * trainable}
    ident = {"precision": precision, "dropout": dropout, "variant": variant}
    ident |= {"rss_start_gb": rss0, "rss_loaded_gb": rss_loaded}
    return {**ident, **fixed, "steps": steps}


def rows(r: dict) -> dict[str, float]:
    """One contender's column: part -> GB, for the longest batch (the first step)."""
    first = r["steps"][0]
    col = {f"weights, {dtype}": gb for dtype, gb in r["weights_gb"].items()}
    col["trainable: fp32 weights, gradients, AdamW moments"] = r["trainable_grads_adam_gb"]
    for where, nbytes in first["saved_bytes"].items():
        col[f"saved for backward: {where}"] = nbytes / GB
    col["**saved for backward, all**"] = sum(first["saved_bytes"].values()) / GB
    col["process after loading (python, torch, tokenizer, data, weights)"] = r["rss_loaded_gb"]
    col["**process high-water mark after the longest step**"] = first["rss_peak_gb"]
    col["process high-water mark after all steps"] = r["steps"][-1]["rss_peak_gb"]
    col["seconds: all steps after the first (not GB)"] = sum(s["seconds"] for s in r["steps"][1:])
    return col


def report(results: list[dict], trainer: dict | None) -> None:
    """One table, the contenders side by side; Trainer + peft has its whole process's peak only."""
    print(f"machine: {json.dumps(machine())}\nversions: {json.dumps(versions())}\n")
    first = results[0]["steps"][0]
    print(f"the longest batch {first['shape']} ({first['real_tokens']} real tokens)\n")
    cols = {f"{r['precision']}, dropout {r['dropout']}, {r['variant']}": rows(r) for r in results}
    if trainer is not None:
        cols["Trainer + peft (fp32, whole process)"] = {"process high-water mark after all steps": trainer["peak_gb"]}
    parts = list(dict.fromkeys(k for c in cols.values() for k in c))
    print("| part (GB) | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
    for part in parts:
        cells = [f"{c[part]:.2f}" if part in c else "–" for c in cols.values()]
        print(f"| {part} | " + " | ".join(cells) + " |")
    for name, r in zip(cols, results):
        peaks = ", ".join(f"{s['rss_peak_gb']:.2f}" for s in r["steps"])
        print(f"\n{name}: high-water mark after each step (longest batch first): {peaks} GB")


def run_trainer(n: int) -> dict:
    """../shared/bench/hf_baseline.py --recipe strong on the bundled model: its own JSON line."""
    from peftlab.models.bundled import ensure_cached

    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, str(root / "../shared/bench/hf_baseline.py"), "--model", str(ensure_cached("smollm2-135m"))]
    cmd += ["--data", str(root / "../shared/data/dialogsum/train.jsonl"), "--recipe", "strong", "--method", "lora"]
    cmd += ["--lora-r", "16", "--examples", str(n), "--batch", "8", "--max-length", "512", "--lr", "2e-4"]
    with tempfile.TemporaryDirectory() as cwd:  # it writes hf_baseline_out/ where it runs
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=cwd).stdout
    own = json.loads(out.strip().splitlines()[-1])
    return {**own, "peak_gb": own["peak_rss_mb"] / 1024}


def child(precision: str, dropout: str, variant: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--one", precision, "--dropout", dropout, "--examples", str(n)]
    cmd += ["--variant", variant]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--dropout", default="fused", help="comma-separated: fused (peftlab's), unfused (peft's)")
    p.add_argument("--examples", type=int, default=64)
    p.add_argument(
        "--variant",
        default="swiglu",
        help="comma-separated: plain (transformers' MLP, glibc's dynamic mmap threshold), swiglu "
        "(models/swiglu.py: how peftlab trains by default), malloc (cpu_allocator.py, "
        "train.release_memory), both (default: %(default)s)",
    )
    p.add_argument("--trainer", action="store_true", help="add Trainer + peft (hf_baseline.py --recipe strong)")
    p.add_argument("--json", help="also write the raw figures here")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one precision, JSON out
    a = p.parse_args()
    if a.one:
        print(json.dumps(profile(a.one, a.examples, a.dropout, a.variant)))
        return
    runs = [(pr, d, v) for pr in a.precisions.split(",") for d in a.dropout.split(",") for v in a.variant.split(",")]
    results = [child(pr, d, v, a.examples) for pr, d, v in runs]
    trainer = run_trainer(a.examples) if a.trainer else None
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": results, "trainer": trainer}, indent=1))
    report(results, trainer)


if __name__ == "__main__":
    main()
