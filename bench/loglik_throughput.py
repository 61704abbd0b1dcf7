"""Log-likelihood scoring: each prompt once with its options on its KV cache, against one row per
(prompt, option) pair.

    .venv/bin/python bench/loglik_throughput.py [--examples 200] [--repeats 3] [--batch-size 32]
        [--threads N] [--out runs/bench/loglik_throughput.json]

Two tasks scored by log-likelihood with the bundled SmolLM2-135M-Instruct, zero-shot (the configs
configs/commonsense_qa/zero_shot.yaml and configs/emotion/zero_shot.yaml, first --examples of the
split each scores):
  commonsense_qa   5 options per question, length-normalised (multiple_choice)
  emotion          6 label words per text (classify)
Contenders, on the same prompts, options and batch size (counted in (prompt, option) pairs):
  shared    tasks/loglik.continuation_logprobs(share_prompt=True): models/option_scores.py
  pairs     the same with share_prompt=False: every pair its own row, prompt + option
They alternate (shared, pairs, shared, ...) for --repeats rounds after a warm-up; the table gives
median seconds and the median per-round ratio, and checks that both pick the same option for every
example and how far their scores differ. Progress goes to stderr, the Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import machine, versions

from peftlab.config import load_config
from peftlab.models import load_backbone
from peftlab.tasks import loglik
from peftlab.tasks.base import build_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"commonsense_qa": "configs/commonsense_qa/zero_shot.yaml", "emotion": "configs/emotion/zero_shot.yaml"}
CONTENDERS = ("shared", "pairs")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def picks(task, scores) -> list[int]:
    if task.output_type == "classify":
        return [max(range(len(row)), key=lambda k: (row[k][0], -k)) for row in scores]
    return [loglik.pick_choice(row) for row in scores]


def measure(bb, task, examples, batch_size: int, repeats: int) -> dict:
    prompts = [e.prompt for e in examples]
    options = [task.label_words if task.output_type == "classify" else e.choices for e in examples]
    pairs = sum(map(len, options))

    def run(name: str, n: int | None = None):
        k = len(prompts) if n is None else n
        return loglik.continuation_logprobs(
            bb, bb.model, prompts[:k], options[:k], batch_size=batch_size, share_prompt=name == "shared"
        )

    for name in CONTENDERS:  # warm-up
        run(name, 4)
    rounds = []
    for r in range(repeats):
        rnd = {}
        for name in CONTENDERS:
            t0 = time.perf_counter()
            scores = run(name)
            rnd[name] = {"seconds": time.perf_counter() - t0, "scores": [[s for s, _ in row] for row in scores]}
            rnd[name]["picks"] = picks(task, scores)
            log(f"round {r + 1}/{repeats} {name:7s} {rnd[name]['seconds']:7.1f} s  ({pairs} pairs)")
        rounds.append(rnd)
    last = rounds[-1]
    diff = max(abs(a - b) for ra, rb in zip(last["shared"]["scores"], last["pairs"]["scores"]) for a, b in zip(ra, rb))
    return {
        "examples": len(examples),
        "pairs": pairs,
        "seconds": {n: statistics.median(r[n]["seconds"] for r in rounds) for n in CONTENDERS},
        "speedup": statistics.median(r["pairs"]["seconds"] / r["shared"]["seconds"] for r in rounds),
        "same_picks": all(r["shared"]["picks"] == r["pairs"]["picks"] for r in rounds),
        "max_abs_score_diff": diff,
        "rounds": [{n: {"seconds": r[n]["seconds"]} for n in CONTENDERS} for r in rounds],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--tasks", default="commonsense_qa,emotion", help="comma-separated (default: %(default)s)")
    p.add_argument("--examples", type=int, default=200, help="first N examples of each task (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the two contenders (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="(prompt, option) pairs per batch (default: %(default)s)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default="runs/bench/loglik_throughput.json", help="raw results (default: %(default)s)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(ROOT)  # the configs' data_dir is relative to the repository root
    command = " ".join(shlex.quote(a) for a in [sys.executable.replace(str(ROOT) + "/", ""), *sys.argv])
    bb = None
    results = {}
    for name in args.tasks.split(","):
        cfg = load_config(Path(TASKS[name]))
        task = build_task(cfg.task)
        examples = task.split("test")[: args.examples]
        if bb is None:
            log(f"loading {cfg.model.name} ...")
            bb = load_backbone(cfg.model, log=log)
            bb.model.eval()
        log(f"{name}: {len(examples)} examples")
        results[name] = measure(bb, task, examples, args.batch_size, args.repeats)
    info = {"command": command, "machine": machine(), "versions": versions(), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=1))
    m = info["machine"]
    print(f"Command: {command}\nMachine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB; {info['versions']}")
    print("\n| task | examples (pairs) | shared s | pairs s | speed-up | same picks | max score diff |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        s = r["seconds"]
        print(
            f"| {name} | {r['examples']} ({r['pairs']}) | {s['shared']:.1f} | {s['pairs']:.1f} | "
            f"{r['speedup']:.2f}x | {'yes' if r['same_picks'] else 'NO'} | {r['max_abs_score_diff']:.1e} |"
        )


if __name__ == "__main__":
    main()
