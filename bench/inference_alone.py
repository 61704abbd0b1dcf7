"""Inference cost measured alone: decode ms/token of full fine-tuning, zero-shot and merged LoRA side by side.

    .venv/bin/python bench/inference_alone.py [--model smollm2-135m] [--prompts 4] [--repeats 3]
        [--new-tokens 32] [--prompt-tokens 64] [--threads N] [--out runs/bench/inference_alone.json]

What it checks: with prefill timed apart and every sequence decoding exactly --new-tokens tokens (EOS
ignored), a merged LoRA costs what full fine-tuning costs (after merging they are the same
architecture: the same Linear shapes) and zero-shot costs what full costs (the same model). Before
inference_cost.py measured this way, compare_all recorded merged LoRA at 81.1 against full's 51.8
ms/token, and zero-shot headed the latency frontier (it stopped at EOS early, so its prompt's cost was
spread over few tokens, or over many for a method that rambled).

Contenders, all on the same DialogSum test prompts (the first --prompts, each cut to --prompt-tokens
tokens: DialogSum's dialogues run to hundreds of tokens, whose batch-16 prefill would dominate the
bench's time on a 2-core CPU; decode is what it compares), no training:
  full       a copy of the plain model's weights (what a full fine-tune is, architecturally)
  zero-shot  the plain model
  lora-merged  LoRA r=16 on all linear layers with random non-zero lora_B, merged (merge_and_unload)
  lora-unmerged  the same LoRA before merging, for scale (two extra small matmuls per layer)
Each repeat times every contender in turn (interleaved: a load change on the machine hits them all),
at batch 1 (each prompt alone) and batch 16 (the prompts repeated to 16 rows), with
``inference_cost.timed_generation``: the code a run's measurement uses. The table shows medians over
repeats of each repeat's median, and the median of the per-repeat ratios to full (the ratio is what
survives a loaded machine). Progress goes to stderr; a Markdown table for bench/RESULTS.md to stdout.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import shlex
import statistics
import sys
from pathlib import Path

import torch
from machine import machine, versions

from peftlab.config import ModelConfig, TaskConfig
from peftlab.measure.inference_cost import timed_generation
from peftlab.methods import get_method
from peftlab.models import load_backbone
from peftlab.tasks.base import build_task
from peftlab.tasks.catalog import resolve_task

CONTENDERS = ("full", "zero-shot", "lora-merged", "lora-unmerged")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def contenders(bb) -> dict[str, torch.nn.Module]:
    """The four models (resident together here: this bench times speed, not memory)."""
    plain = bb.model.eval()
    full = copy.deepcopy(plain)  # its own weight tensors, as a fine-tuned model's would be
    lora = get_method("lora")
    unmerged = lora.apply(copy.deepcopy(plain), lora.config_cls(rank=16, target_modules="all-linear", dropout=0.0))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in unmerged.named_parameters():
            if "lora_B" in name:  # peft starts lora_B at zero: a trained adapter is not
                p.normal_(0.0, 0.02)
    merged = copy.deepcopy(unmerged).merge_and_unload()
    return {"full": full, "zero-shot": plain, "lora-merged": merged.eval(), "lora-unmerged": unmerged.eval()}


def time_one(bb, model, batches, new_tokens: int) -> dict[str, float]:
    """Medians over ``batches`` of decode ms per generated token and prefill ms per prompt."""
    with bb.numerics():
        timings = [timed_generation(model, ids, mask, new_tokens) for ids, mask in batches]
    return {
        "decode_ms_per_token": 1000 * statistics.median(t.decode_s / ((new_tokens - 1) * t.rows) for t in timings),
        "prefill_ms_per_prompt": 1000 * statistics.median(t.prefill_s / t.rows for t in timings),
    }


def measure(bb, models: dict, prompts: list[str], args) -> list[dict]:
    """Every repeat: each contender at batch 1 and batch 16, in turn."""
    encoded = [bb.prompt_ids(p, args.prompt_tokens) for p in prompts]
    batches = {1: [bb.pad_prompts([e]) for e in encoded], 16: [bb.pad_prompts((encoded * 16)[:16])]}
    for model in models.values():  # warm-up: first-call allocations
        with bb.numerics():
            timed_generation(model, *batches[16][0], new_tokens=2)
    rounds = []
    for r in range(args.repeats):
        rnd = {}
        for name, model in models.items():
            rnd[name] = {b: time_one(bb, model, batches[b], args.new_tokens) for b in (1, 16)}
            shown = ", ".join(f"b{b} {v['decode_ms_per_token']:.2f}" for b, v in rnd[name].items())
            log(f"repeat {r + 1}: {name}: decode ms/token {shown}")
        rounds.append(rnd)
    return rounds


def table(rounds: list[dict]) -> str:
    """Markdown: per contender and batch, median decode ms/token, prefill ms/prompt, ratio to full."""
    lines = [
        "| contender | decode ms/token b1 | vs full | decode ms/token b16 | vs full "
        "| prefill ms/prompt b1 | prefill ms/prompt b16 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def med(name, b, key):
        return statistics.median(r[name][b][key] for r in rounds)

    def ratio(name, b):
        key = "decode_ms_per_token"
        return statistics.median(r[name][b][key] / r["full"][b][key] for r in rounds)

    for name in CONTENDERS:
        d1, d16 = med(name, 1, "decode_ms_per_token"), med(name, 16, "decode_ms_per_token")
        p1, p16 = med(name, 1, "prefill_ms_per_prompt"), med(name, 16, "prefill_ms_per_prompt")
        r1, r16 = ratio(name, 1), ratio(name, 16)
        lines.append(f"| {name} | {d1:.2f} | {r1:.3f} | {d16:.2f} | {r16:.3f} | {p1:.1f} | {p16:.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default="../shared/data/dialogsum", help="DialogSum folder (default: %(default)s)")
    p.add_argument("--prompts", type=int, default=4, help="test prompts timed alone at batch 1")
    p.add_argument("--prompt-tokens", type=int, default=64, help="each prompt cut to this many source tokens")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--new-tokens", type=int, default=32, help="tokens every sequence decodes, EOS ignored")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default="runs/bench/inference_alone.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task_cfg = TaskConfig.model_validate(resolve_task({"name": "dialogsum", "data_dir": args.data}, "bench"))
    prompts = [e.prompt for e in build_task(task_cfg).split("test")[: args.prompts]]
    log(f"loading {args.model} ...")
    bb = load_backbone(ModelConfig(name=args.model), log=log)
    load = os.getloadavg()
    rounds = measure(bb, contenders(bb), prompts, args)
    load_after = os.getloadavg()
    record = {
        "date": datetime.date.today().isoformat(),
        "command": shlex.join(sys.argv),
        "machine": machine(),
        "versions": versions(),
        "load_average_1m": {"start": round(load[0], 2), "end": round(load_after[0], 2)},
        "args": vars(args),
        "rounds": [{n: {str(b): v for b, v in c.items()} for n, c in rnd.items()} for rnd in rounds],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"{record['date']}, {record['machine']['cpu']}, load average {load[0]:.2f} -> {load_after[0]:.2f}")
    print(table(rounds))


if __name__ == "__main__":
    main()
