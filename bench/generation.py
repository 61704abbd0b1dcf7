"""Generation, and log-likelihood scoring, of a whole test set: this tree against a snapshot of another.

    git worktree add /work/base <commit>      # the decoder to beat
    PEFTLAB_CPU_BF16=0 .venv/bin/python bench/generation.py --baseline /work/base [--rounds 3]
        [--batch-sizes 16,32] [--examples 64] [--dialogsum ../shared/data/dialogsum]

What `peftlab eval` and every validation run (Backbone.generate_ids: greedy, the task's max_new_tokens,
the shared prompt prefix on) do with SmolLM2-135M, the bundled model, zero-shot (the numerics of any
method's frozen part), over the built-in text-to-SQL test set and the first --examples DialogSum
test dialogues. --tasks commonsense_qa,emotion: log-likelihood scoring instead (tasks/loglik.py, as
`peftlab eval` scores them: each prompt once with its options on its cache, batches of eval.batch_size
(prompt, option) pairs), over the first --examples test examples of configs/<task>/zero_shot.yaml; the
last column then says whether the picks are the baseline's, and the largest score difference.
Each contender runs in its own process with its own tree's `src` first on the path,
the contenders alternating for --rounds rounds; the table gives each one's median seconds, the median
of the per-round ratios, and whether the tokens are the same as the baseline's at its batch size.
Progress to stderr, a Markdown table for bench/RESULTS.md to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(args) -> None:
    """One timed generation, in this process: seconds and token ids to --out."""
    import torch

    sys.path.insert(0, str(HERE))
    from shared_prefix import prompts_of

    from peftlab.config import ModelConfig
    from peftlab.models.loading import load_backbone

    bb = load_backbone(ModelConfig(name="smollm2-135m"), log=lambda *a: None)
    from loglik_throughput import TASKS as LOGLIK  # log-likelihood tasks: their configs

    if args.task in LOGLIK:
        return scoring(bb, args, LOGLIK[args.task])
    prompts, new_tokens = prompts_of(args)[args.task]
    start = time.perf_counter()
    with torch.inference_mode():
        ids = bb.generate_ids(bb.model, prompts, new_tokens, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    Path(args.out).write_text(json.dumps({"seconds": seconds, "ids": ids, "threads": torch.get_num_threads()}))


def scoring(bb, args, config: str) -> None:
    """One timed log-likelihood scoring of a task's test examples: seconds, picks and scores to --out."""
    import torch
    from loglik_throughput import picks

    from peftlab.config import load_config
    from peftlab.tasks import loglik
    from peftlab.tasks.base import build_task

    os.chdir(HERE.parent)  # the configs' data_dir is relative to the repository root
    task = build_task(load_config(Path(config)).task, log=lambda *a: None)
    examples = task.split("test")[: args.examples]
    options = [task.label_words if task.output_type == "classify" else e.choices for e in examples]
    start = time.perf_counter()
    with torch.inference_mode():
        scores = loglik.continuation_logprobs(bb, bb.model, [e.prompt for e in examples], options, args.batch_size)
    seconds = time.perf_counter() - start
    flat = [s for row in scores for s, _ in row]
    Path(args.out).write_text(json.dumps({"seconds": seconds, "ids": picks(task, scores), "scores": flat}))


def run(tree: Path, task: str, batch: int, args) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        cmd = [sys.executable, __file__, "--child", "--task", task, "--batch-size", str(batch), "--out", out.name]
        cmd += ["--examples", str(args.examples), "--dialogsum", args.dialogsum]
        subprocess.run(cmd, env=env, check=True, stderr=subprocess.DEVNULL)
        return json.loads(Path(out.name).read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=False, help="a worktree of the decoder to compare against")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-sizes", default="16", help="comma-separated eval.batch_size values for this tree")
    p.add_argument("--baseline-batch-size", type=int, default=16)
    p.add_argument("--tasks", default="sql_demo,dialogsum")
    p.add_argument("--examples", type=int, default=64, help="DialogSum (or log-likelihood task) test examples")
    p.add_argument("--dialogsum", default=str(HERE.parent.parent / "shared/data/dialogsum"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--task", help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    sys.path.insert(0, str(HERE))
    from machine import cpu_name, versions
    from shared_prefix import flags, ratio_cell, same_cell

    here, base = HERE.parent, Path(args.baseline) if args.baseline else None
    contenders = [(f"this tree, batch {b}", here, b) for b in map(int, args.batch_sizes.split(","))]
    if base is not None:
        contenders.insert(0, (f"baseline, batch {args.baseline_batch_size}", base, args.baseline_batch_size))
    rows = []
    for task in args.tasks.split(","):
        seconds: dict[str, list[float]] = {}
        ids: dict[str, list] = {}
        scores: dict[str, list[float]] = {}
        for r in range(args.rounds):
            for name, tree, batch in contenders if r % 2 == 0 else contenders[::-1]:
                got = run(tree, task, batch, args)
                seconds.setdefault(name, []).append(got["seconds"])
                ids[name] = got["ids"]
                if "scores" in got:
                    scores[name] = got["scores"]
                print(f"{task} round {r} {name}: {got['seconds']:.1f} s", file=sys.stderr, flush=True)
        first = contenders[0][0]
        for name, _, _ in contenders:
            ratios = [a / b for a, b in zip(seconds[first], seconds[name])]
            same = same_cell(ids[name], ids[first])
            if name in scores:  # log-likelihood: the picks, and how far the scores moved
                same += f", scores within {max(abs(a - b) for a, b in zip(scores[name], scores[first])):.1e}"
            rows.append(
                f"| {task} | {len(ids[name])} | {name} | {statistics.median(seconds[name]):.1f} "
                f"| {ratio_cell(ratios)} | {same} |"
            )
    print(
        f"{datetime.date.today()}; {cpu_name()} ({flags()}), {os.cpu_count()} cores, "
        f"PEFTLAB_CPU_BF16={os.environ.get('PEFTLAB_CPU_BF16', 'unset')}, {versions()}; {args.rounds} rounds\n"
    )
    print(f"| task | prompts | contender | seconds (median) | speed-up against {first} (rounds) | same output |")
    print("|---|---:|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
