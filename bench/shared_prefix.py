"""Generation with the batch's shared prompt prefix prefilled once, against every row prefilled whole.

    .venv/bin/python bench/shared_prefix.py [--rounds 3] [--batch-size 16] [--dialogsum ../shared/data/dialogsum]
    PEFTLAB_CPU_BF16=0 .venv/bin/python bench/shared_prefix.py      # fp32 on a CPU that has bf16

What `peftlab eval` and every validation run (Backbone.generate_ids, greedy, the task's max_new_tokens)
on SmolLM2-135M (the bundled model, zero-shot: the same numerics as any method's frozen part), over
the built-in text-to-SQL test set (all of it) and the first --examples DialogSum test dialogues. The
two settings (eval.share_prefix true / false) alternate for --rounds rounds; the table gives each one's
median seconds and the median of the per-round ratios, and whether the predictions are the same token
for token. Progress to stderr, a Markdown table for bench/RESULTS.md to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_name, versions  # noqa: E402 (bench/ is not a package)

from peftlab.config import ModelConfig, TaskConfig  # noqa: E402
from peftlab.models.loading import load_backbone  # noqa: E402
from peftlab.models.shared_prefix import shared_length  # noqa: E402
from peftlab.tasks.base import build_task  # noqa: E402
from peftlab.tasks.catalog import resolve_task  # noqa: E402


def flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    have = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in have) or "-"


def prompts_of(args) -> dict[str, tuple[list[str], int]]:
    """task name -> (test prompts, max_new_tokens)."""
    out = {}
    sql = build_task(TaskConfig(name="sql_demo"), log=lambda *a: None)
    out["sql_demo"] = ([e.prompt for e in sql.split("test")], sql.max_new_tokens)
    if args.dialogsum and Path(args.dialogsum).is_dir():
        section = resolve_task({"name": "dialogsum", "data_dir": args.dialogsum}, "bench")
        ds = build_task(TaskConfig.model_validate(section), log=lambda *a: None)
        out["dialogsum"] = ([e.prompt for e in ds.split("test")[: args.examples]], ds.max_new_tokens)
    return out


def ratio_cell(ratios: list[float]) -> str:
    """A table cell: the median of per-round ratios, then each round's."""
    return f"{statistics.median(ratios):.2f}x ({', '.join(f'{x:.2f}' for x in ratios)})"


def same_cell(got: list, reference: list) -> str:
    """A table cell: how many predictions are the reference's token for token."""
    return f"{sum(a == b for a, b in zip(got, reference))}/{len(got)}"


def shared_share(bb, prompts: list[str], batch_size: int) -> float:
    """The share of prompt tokens that fall in a batch's shared prefix (length-sorted batches, as generate_ids)."""
    encoded = sorted((bb.prompt_ids(p) for p in prompts), key=len, reverse=True)
    shared = total = 0
    for i in range(0, len(encoded), batch_size):
        ids, mask = bb.pad_prompts(encoded[i : i + batch_size])
        n = shared_length(ids, mask)
        shared += n * (ids.shape[0] - 1)
        total += int(mask.sum())
    return shared / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--examples", type=int, default=64, help="DialogSum test dialogues")
    p.add_argument("--dialogsum", default="../shared/data/dialogsum", help="DialogSum folder (skipped if absent)")
    args = p.parse_args()
    bb = load_backbone(ModelConfig(name="smollm2-135m"), log=lambda *a: None)
    rows = []
    for task, (prompts, new_tokens) in prompts_of(args).items():
        seconds: dict[bool, list[float]] = {True: [], False: []}
        preds: dict[bool, list] = {}
        for r in range(args.rounds):
            for share in (True, False) if r % 2 == 0 else (False, True):
                t0 = time.perf_counter()
                with torch.inference_mode():
                    preds[share] = bb.generate_ids(
                        bb.model, prompts, new_tokens, batch_size=args.batch_size, share_prefix=share
                    )
                seconds[share].append(time.perf_counter() - t0)
                print(f"{task} round {r} share={share}: {seconds[share][-1]:.1f} s", file=sys.stderr, flush=True)
        ratios = [off / on for on, off in zip(seconds[True], seconds[False])]
        rows.append(
            f"| {task} | {len(prompts)} | {100 * shared_share(bb, prompts, args.batch_size):.0f}% "
            f"| {statistics.median(seconds[False]):.1f} | {statistics.median(seconds[True]):.1f} "
            f"| {ratio_cell(ratios)} | {same_cell(preds[True], preds[False])} |"
        )
    print(
        f"{datetime.date.today()}; {cpu_name()} ({flags()}), {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}, PEFTLAB_CPU_BF16={os.environ.get('PEFTLAB_CPU_BF16', 'unset')}, "
        f"{versions()}; batch {args.batch_size}, {args.rounds} rounds\n"
    )
    head = ["task", "prompts", "prompt tokens shared", "whole (s)", "shared prefix (s)", "speed-up, median (rounds)"]
    print("| " + " | ".join([*head, "same tokens"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
