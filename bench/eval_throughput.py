"""Evaluation throughput: peftlab's generation + scoring against two plainer recipes.

    .venv/bin/python bench/eval_throughput.py [--model smollm2-135m] [--adapter-method lora]
        [--examples 48] [--repeats 3] [--batch-size 16] [--threads N] [--out runs/bench/eval_throughput.json]

Contenders, on the same model, the same DialogSum test prompts (first --examples; the same prompt
token ids from Backbone.prompt_ids) and the task's max_new_tokens (64), greedy, each followed by
the task's scoring:
  peftlab   Backbone.generate_ids + scoring (what generate_and_score runs): length-sorted batches,
            left padding for decoder-only models, KV cache, peftlab's own decoding loop
  loop      one prompt at a time through model.generate (the reference projects' recipe)
  unsorted  batches of the same size in the data's order, left-padded for decoder-only models
They alternate (peftlab, loop, unsorted, peftlab, ...) for --repeats rounds; the table shows
medians and, for the speed-ups, the median of the per-round ratios (each round's contenders ran
side by side). New tokens are counted per example up to and including EOS, padding excluded.
It also checks that peftlab's greedy predictions equal the loop's and the unsorted batches'.
Progress goes to stderr; the report (a Markdown table for bench/RESULTS.md) to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import machine, versions

from peftlab.config import ModelConfig, TaskConfig
from peftlab.models import load_backbone
from peftlab.tasks.base import build_task
from peftlab.tasks.catalog import resolve_task

CONTENDERS = ("peftlab", "loop", "unsorted")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def new_tokens(row: torch.Tensor, eos: int) -> int:
    """Generated tokens of one example up to and including its first EOS (what follows is padding)."""
    ids = row.tolist()
    return ids.index(eos) + 1 if eos in ids else len(ids)


def run_peftlab(bb, model, task, examples, args):
    """generate_and_score's path: Backbone.generate_ids (peftlab's decoder), then the task's scoring."""
    t0 = time.perf_counter()
    ids = bb.generate_ids(
        model,
        [e.prompt for e in examples],
        max_new_tokens=task.max_new_tokens,
        batch_size=args.batch_size,
        max_source_tokens=args.max_source_tokens,
    )
    preds = bb.texts(ids)
    scores = task.score(preds, examples)
    scores["seconds"] = time.perf_counter() - t0
    return preds, sum(len(row) for row in ids), scores


def generate_batch(bb, model, encoded: list[list[int]], max_new_tokens: int):
    """(texts, new tokens) of one batch: right padding for seq2seq, left padding for decoder-only."""
    tok = bb.tokenizer
    width = max(len(s) for s in encoded)
    ids = torch.full((len(encoded), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(encoded):
        cols = slice(0, len(seq)) if bb.is_seq2seq else slice(width - len(seq), width)
        ids[row, cols], mask[row, cols] = torch.tensor(seq), 1
    out = model.generate(
        input_ids=ids.to(bb.device),
        attention_mask=mask.to(bb.device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    new = out[:, 1:] if bb.is_seq2seq else out[:, width:]  # seq2seq: drop the decoder start token
    texts = [tok.decode(row, skip_special_tokens=True).strip() for row in new]
    return texts, sum(new_tokens(row, tok.eos_token_id) for row in new)


def run_batches(bb, model, task, examples, args, size: int):
    """Batches of ``size`` in the data's order (size 1: the per-example loop)."""
    preds, tokens = [], 0
    with torch.no_grad():
        for start in range(0, len(examples), size):
            chunk = examples[start : start + size]
            encoded = [bb.prompt_ids(e.prompt, args.max_source_tokens) for e in chunk]
            texts, n = generate_batch(bb, model, encoded, task.max_new_tokens)
            preds += texts
            tokens += n
    return preds, tokens, task.score(preds, examples)


def first_difference(a: list[str], b: list[str], examples) -> dict | None:
    diffs = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if not diffs:
        return {"differing": 0}
    i = diffs[0]
    return {"differing": len(diffs), "first": {"index": i, "id": examples[i].id, "peftlab": a[i], "other": b[i]}}


def one_round(r: int, runners: dict, examples: list, task, args, sync) -> dict:
    """Every contender once over the examples, one after another (alternating rounds: the same machine state)."""
    rnd = {}
    for name in CONTENDERS:
        sync()
        t0 = time.perf_counter()
        preds, tokens, scores = runners[name](examples)
        sync()
        seconds = time.perf_counter() - t0
        rnd[name] = {
            "seconds": seconds,
            "new_tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "examples_per_s": len(examples) / seconds,
            "score": scores[task.primary],
            "preds": preds,
        }
        log(
            f"round {r + 1}/{args.repeats} {name:8s} {seconds:7.1f} s  {tokens / seconds:7.1f} new tokens/s  "
            f"{task.primary}={scores[task.primary]:.4f}"
        )
    return rnd


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--model", default="smollm2-135m", help="model.name: bundled, tiny-*, folder or hub id")
    p.add_argument(
        "--adapter-method",
        choices=("none", "lora"),
        default="none",
        help="lora: evaluate through a freshly initialised peft LoRA (rank 16, all-linear)",
    )
    p.add_argument("--data", default="../shared/data/dialogsum", help="DialogSum folder (default: %(default)s)")
    p.add_argument("--examples", type=int, default=48, help="first N test examples (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the three contenders (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="peftlab and unsorted batch size (default: %(default)s)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default="runs/bench/eval_throughput.json", help="raw results (default: %(default)s)")
    return p.parse_args()


def print_report(command, dev, bb, args, examples, lengths, task, summary, same, deterministic) -> None:
    """The markdown RESULTS.md quotes: command, date, machine, the table of medians, prediction equality."""
    where = dev.get("gpu") or f"{dev['cpu']}, {dev['cores']} cores, {dev['torch_threads']} torch threads"
    label = {
        "peftlab": f"peftlab (length-sorted batches of {args.batch_size})",
        "loop": "per-example loop",
        "unsorted": f"unsorted batches of {args.batch_size}",
    }
    print(f"Command: `{command}`")
    print(f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"Machine: {where}, {dev['ram_gib']} GiB RAM; device {bb.device}; {dev['platform']}")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    print(
        f"Model {args.model}{' + fresh LoRA r16 all-linear (peft)' if args.adapter_method == 'lora' else ''}, "
        f"DialogSum test first {len(examples)} (prompt {min(lengths)}-{max(lengths)} tokens, "
        f"sources <= {args.max_source_tokens}), max_new_tokens {task.max_new_tokens}, greedy, "
        f"{args.repeats} alternating rounds, medians.\n"
    )
    print(f"| path | s | examples/s | new tokens/s | new tokens | {task.primary} | peftlab speed-up (tokens/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n in CONTENDERS:
        s = summary[n]
        up = s.get("peftlab_speedup_tokens_per_s")
        cell = f"{up['median']:.2f}x ({min(up['per_round']):.2f}-{max(up['per_round']):.2f})" if up else "-"
        print(
            f"| {label[n]} | {s['seconds']:.1f} | {s['examples_per_s']:.2f} | {s['tokens_per_s']:.1f} | "
            f"{s['new_tokens']:.0f} | {s['score']:.4f} | {cell} |"
        )
    print()
    for other, d in same.items():
        line = f"Greedy predictions, peftlab vs {other}: {d['differing']} of {len(examples)} differ"
        if d["differing"]:
            f = d["first"]
            line += (
                f"; first: example {f['index']} ({f['id']}):\n  peftlab: {f['peftlab']!r}\n  {other}: {f['other']!r}"
            )
        print(line)
    if not all(deterministic.values()):
        print("Not the same predictions in every round: " + ", ".join(n for n, ok in deterministic.items() if not ok))


def summarise(rounds: list[dict], examples: list) -> tuple[dict, dict, dict]:
    """(medians per contender with peftlab's per-round speed-ups, where predictions first differ,
    whether each contender predicted the same in every round)."""

    def med(name, key):
        return statistics.median(rnd[name][key] for rnd in rounds)

    def ratios(other):  # per round, peftlab and the other ran side by side
        return [rnd["peftlab"]["tokens_per_s"] / rnd[other]["tokens_per_s"] for rnd in rounds]

    first = rounds[0]
    same = {
        other: first_difference(first["peftlab"]["preds"], first[other]["preds"], examples)
        for other in ("loop", "unsorted")
    }
    deterministic = {n: all(rnd[n]["preds"] == first[n]["preds"] for rnd in rounds) for n in CONTENDERS}
    summary = {
        n: {k: med(n, k) for k in ("seconds", "examples_per_s", "tokens_per_s", "new_tokens", "score")}
        for n in CONTENDERS
    }
    for other in ("loop", "unsorted"):
        summary[other]["peftlab_speedup_tokens_per_s"] = {
            "median": statistics.median(ratios(other)),
            "per_round": ratios(other),
        }
    return summary, same, deterministic


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(shlex.quote(a) for a in [sys.executable.replace(os.getcwd() + "/", ""), *sys.argv])

    task_cfg = TaskConfig.model_validate(resolve_task({"name": "dialogsum", "data_dir": args.data}, "bench"))
    args.max_source_tokens = task_cfg.max_source_tokens
    task = build_task(task_cfg)
    examples = task.split("test")[: args.examples]
    log(f"loading {args.model} ...")
    bb = load_backbone(ModelConfig(name=args.model), log=log)
    if args.adapter_method == "lora":
        from peftlab.methods import get_method

        lora = get_method("lora")
        bb.model = lora.apply(bb.model, lora.config_cls(rank=16, target_modules="all-linear"))
    model = bb.model.eval()
    sync = torch.cuda.synchronize if bb.device.type == "cuda" else (lambda: None)
    lengths = [len(bb.prompt_ids(e.prompt, args.max_source_tokens)) for e in examples]

    runners = {
        "peftlab": lambda ex: run_peftlab(bb, model, task, ex, args),
        "loop": lambda ex: run_batches(bb, model, task, ex, args, 1),
        "unsorted": lambda ex: run_batches(bb, model, task, ex, args, args.batch_size),
    }
    log("warm-up: each contender on 2 examples ...")
    for name in CONTENDERS:
        runners[name](examples[:2])
    rounds = [one_round(r, runners, examples, task, args, sync) for r in range(args.repeats)]

    summary, same, deterministic = summarise(rounds, examples)
    dev = machine()
    print_report(command, dev, bb, args, examples, lengths, task, summary, same, deterministic)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": command,
                "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": dev,
                "device": str(bb.device),
                "versions": versions(),
                "args": vars(args),
                "examples": [e.id for e in examples],
                "prompt_tokens": lengths,
                "max_new_tokens": task.max_new_tokens,
                "summary": summary,
                "predictions_differ": same,
                "deterministic": deterministic,
                "rounds": rounds,
            },
            indent=1,
        )
    )
    log(f"raw results: {out}")


if __name__ == "__main__":
    main()
