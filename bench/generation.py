"""Generation of a whole test set: this tree's decoder against a snapshot of another (today's decoder).

    git worktree add /work/base <commit>      # the decoder to beat
    PEFTLAB_CPU_BF16=0 .venv/bin/python bench/generation.py --baseline /work/base [--rounds 3]
        [--batch-sizes 16,32] [--examples 64] [--dialogsum ../shared/data/dialogsum]

What `peftlab eval` and every validation run (Backbone.generate_ids: greedy, the task's max_new_tokens,
the shared prompt prefix on) do with SmolLM2-135M, the bundled model, zero-shot (the numerics of any
method's frozen part), over the built-in text-to-SQL test set and the first --examples DialogSum
test dialogues. Each contender runs in its own process with its own tree's `src` first on the path,
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
    prompts, new_tokens = prompts_of(args)[args.task]
    start = time.perf_counter()
    with torch.inference_mode():
        ids = bb.generate_ids(bb.model, prompts, new_tokens, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    Path(args.out).write_text(json.dumps({"seconds": seconds, "ids": ids, "threads": torch.get_num_threads()}))


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
    p.add_argument("--examples", type=int, default=64, help="DialogSum test dialogues")
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
        for r in range(args.rounds):
            for name, tree, batch in contenders if r % 2 == 0 else contenders[::-1]:
                got = run(tree, task, batch, args)
                seconds.setdefault(name, []).append(got["seconds"])
                ids[name] = got["ids"]
                print(f"{task} round {r} {name}: {got['seconds']:.1f} s", file=sys.stderr, flush=True)
        first = contenders[0][0]
        for name, _, _ in contenders:
            ratios = [a / b for a, b in zip(seconds[first], seconds[name])]
            rows.append(
                f"| {task} | {len(ids[name])} | {name} | {statistics.median(seconds[name]):.1f} "
                f"| {ratio_cell(ratios)} | {same_cell(ids[name], ids[first])} |"
            )
    print(
        f"{datetime.date.today()}; {cpu_name()} ({flags()}), {os.cpu_count()} cores, "
        f"PEFTLAB_CPU_BF16={os.environ.get('PEFTLAB_CPU_BF16', 'unset')}, {versions()}; {args.rounds} rounds\n"
    )
    print(f"| task | prompts | contender | seconds (median) | speed-up against {first} (rounds) | same tokens |")
    print("|---|---:|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
