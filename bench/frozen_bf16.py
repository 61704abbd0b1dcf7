"""Frozen weights stored in bf16 once (precision.store_frozen_linears) against autocast recasting them
at every forward, side by side: LoRA generation and training on the bundled SmolLM2-135M.

    .venv/bin/python bench/frozen_bf16.py [--rounds 3] [--examples 32] [--steps 4]   # ~3 min on 2 cores

Two copies of one LoRA model (r=16, all linear layers, the same initial weights), both computing
under bf16 autocast: "recast" keeps the frozen base in fp32 (autocast casts each frozen weight to
bf16 at every call: torch caches the cast only for weights that require grad), "stored" holds the
frozen nn.Linear weights in bf16. Per round, alternating: greedy generation of the first --examples
DialogSum test prompts (batch 16, 64 new tokens max) and --steps LoRA training steps (batch 8).
Prints medians, the median of per-round ratios, and checks that both produce identical predictions
and identical training losses. Run it on a CPU with bf16 (AVX512-BF16/AMX) or a GPU: elsewhere bf16
itself is slow.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from machine import machine, versions

from peftlab.config import ModelConfig, TaskConfig
from peftlab.measure.precision import store_frozen_linears
from peftlab.methods import get_method, trainable_parameters
from peftlab.models import load_backbone
from peftlab.tasks.base import build_task
from peftlab.tasks.catalog import resolve_task


def generate(bb, model, prompts, max_new_tokens, max_source_tokens) -> tuple[float, list]:
    bb.model = model
    t0 = time.perf_counter()
    ids = bb.generate_ids(model, prompts, max_new_tokens, batch_size=16, max_source_tokens=max_source_tokens)
    return time.perf_counter() - t0, ids


def train(bb, model, batches) -> tuple[float, list[float]]:
    bb.model = model
    model.train()
    opt = torch.optim.AdamW(trainable_parameters(model).values(), lr=1e-4)
    losses, t0 = [], time.perf_counter()
    for batch in batches:
        torch.manual_seed(0)  # the same dropout masks for both copies
        with bb.numerics():
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return time.perf_counter() - t0, losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--examples", type=int, default=32)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--data", default="../shared/data/dialogsum")
    args = p.parse_args()
    task_cfg = TaskConfig.model_validate(resolve_task({"name": "dialogsum", "data_dir": args.data}, "bench"))
    task = build_task(task_cfg)
    bb = load_backbone(ModelConfig(name="smollm2-135m"), log=lambda *a: None)
    bb.model.float()
    bb.compute_dtype = torch.bfloat16
    lora = get_method("lora")
    recast = lora.apply(bb.model, lora.config_cls(rank=16, alpha=32, dropout=0.05, target_modules="all-linear"))
    stored = copy.deepcopy(recast)
    print(f"frozen tensors stored in bf16: {store_frozen_linears(stored, torch.bfloat16)}")
    prompts = [e.prompt for e in task.split("test")[: args.examples]]
    train_ex = task.split("train")[: 8 * args.steps]
    batches = [
        bb.collate([bb.encode(e.prompt, e.target) for e in train_ex[i : i + 8]]) for i in range(0, len(train_ex), 8)
    ]
    new, src = task_cfg.max_new_tokens, task_cfg.max_source_tokens
    generate(bb, recast, prompts[:2], 2, src), generate(bb, stored, prompts[:2], 2, src)  # warm-up
    rows = []
    for r in range(args.rounds):
        row = {}
        for name, model in (
            (("recast", recast), ("stored", stored)) if r % 2 == 0 else (("stored", stored), ("recast", recast))
        ):
            row[f"{name}_gen"], row[f"{name}_ids"] = generate(bb, model, prompts, new, src)
        for name, model in (("recast", recast), ("stored", stored)):
            row[f"{name}_train"], row[f"{name}_losses"] = train(bb, model, batches)
        print(
            f"round {r}: generation recast {row['recast_gen']:.1f} s, stored {row['stored_gen']:.1f} s; "
            f"{args.steps} training steps recast {row['recast_train']:.1f} s, stored {row['stored_train']:.1f} s"
        )
        assert row["recast_ids"] == row["stored_ids"], "predictions differ"
        assert row["recast_losses"] == row["stored_losses"], "training losses differ"
        rows.append(row)

    def med(key):
        return statistics.median(r[key] for r in rows)

    print(f"\nmachine: {machine()}\nversions: {versions()}")
    print(
        "| | recast (fp32 frozen, autocast) | stored (bf16 frozen) | ratio (median per round) |\n|---|---:|---:|---:|"
    )
    for part, label in (
        ("gen", f"generation, {len(prompts)} DialogSum prompts (s)"),
        ("train", f"{args.steps} LoRA steps, batch 8 (s)"),
    ):
        ratio = statistics.median(r[f"recast_{part}"] / r[f"stored_{part}"] for r in rows)
        print(f"| {label} | {med('recast_' + part):.2f} | {med('stored_' + part):.2f} | {ratio:.2f}x |")
    print("identical greedy predictions and training losses in every round")


if __name__ == "__main__":
    main()
