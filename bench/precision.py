"""bf16 against fp32 on this machine's CPU: training speed, evaluation speed and quality, side by side.

    .venv/bin/python bench/precision.py --steps 30 --rounds 3     # ~25 min on 2 CPU cores

Trains LoRA (r=16, all linear layers) on the bundled SmolLM2-135M-Instruct, built-in text-to-SQL
task, batch 8, once with `train.precision: fp32` and once with `bf16`, alternating for --rounds
rounds (a slow spell of the machine hits both). Each run is `python -m peftlab train` in its own
process. Reported per precision: median train examples/s (optimizer steps only), median test
evaluation seconds (greedy generation of the whole test split), and the test exact match and
execution accuracy of every round. Prints the machine (CPU model and its bf16 flags) and versions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from machine import cpu_name, machine, versions


def config(out: Path, precision: str, steps: int, seed: int) -> dict:
    return {
        "name": f"lora-{precision}-r{seed}",
        "output_dir": str(out),
        "seed": seed,
        "model": {"name": "smollm2-135m"},
        "method": {"name": "lora", "rank": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "task": {"name": "sql_demo"},
        "train": {"max_steps": steps, "batch_size": 8, "lr": 2e-3, "precision": precision, "eval_every": steps},
        "eval": {"batch_size": 16, "max_validation": 32},
    }


def run_once(out: Path, precision: str, steps: int, seed: int) -> dict:
    cfg = config(out, precision, steps, seed)
    path = out / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "peftlab", "train", str(path), "--overwrite"], check=True)
    run_dir = out / cfg["name"]
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return {
        "precision": precision,
        "round": seed,
        "examples_per_s": summary["train_examples_per_s"],
        "test": summary["test"],
        "test_seconds": summary["test"].get("seconds"),
    }


def cpu_flags() -> list[str]:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    return sorted(f for f in flags if "bf16" in f or "amx" in f or f == "avx512f")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write every run's numbers as JSON here")
    args = parser.parse_args()
    capability = torch.backends.cpu.get_cpu_capability()  # the widest vector ISA torch's kernels use here
    print(f"command: {' '.join(sys.argv)}\nmachine: {machine()}\nversions: {versions()}")
    print(f"CPU bf16/AMX flags: {cpu_flags() or 'none'}; torch CPU capability: {capability}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for precision in ("fp32", "bf16"):
                rows.append(run_once(Path(tmp), precision, args.steps, r))
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{cpu_name()}, {args.steps} steps, {args.rounds} rounds (medians)\n")
    print("| precision | train examples/s | test eval s | test exact_match per round | execution_accuracy |")
    print("|---|---|---|---|---|")
    for precision in ("fp32", "bf16"):
        mine = [row for row in rows if row["precision"] == precision]
        speed = statistics.median(row["examples_per_s"] for row in mine)
        seconds = statistics.median(row["test_seconds"] or 0 for row in mine)
        em = ", ".join(f"{row['test'].get('exact_match', float('nan')):.3f}" for row in mine)
        ex = ", ".join(f"{row['test'].get('execution_accuracy', float('nan')):.3f}" for row in mine)
        print(f"| {precision} | {speed:.2f} | {seconds:.1f} | {em} | {ex} |")
    ratios = [b["examples_per_s"] / a["examples_per_s"] for a, b in zip(rows[::2], rows[1::2])]
    print(f"\nbf16/fp32 train speed, median of per-round ratios: {statistics.median(ratios):.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
