"""Peak memory of LoRA and QLoRA training runs on SmolLM2-135M, side by side, each in a fresh process.

    .venv/bin/python bench/qlora_memory.py [--rounds 2] [--steps 8] [--precision fp32]   # ~4 min, 2 cores

Three contenders, `peftlab train` on the built-in sql_demo task, batch 8, LoRA r16 alpha 32 dropout 0.05
on q/k/v/o under both methods, no validation, test on the first 16 questions:
  lora            the bundled model in full precision (fp32 weights) with LoRA
  qlora           the base loaded straight into NF4 (methods/qlora.py quantization_config)
  qlora-after     the base loaded in full precision, then quantized layer by layer (peftlab's path
                  until 2026-12-07; the bench stands it in by giving the loader no quantization config)
Rounds alternate the contenders (lora, qlora, qlora-after, lora, ...). Per run it reads summary.json:
the training peak (peak_memory_bytes: the process's resident set, sampled, during optimizer steps), the
whole run's peak (run_peak_memory_bytes: loading included), and the parameters' bytes as held. Prints
a table of medians and writes bench/data/qlora_memory_<precision>.json. Results: bench/RESULTS.md, "QLoRA loads in
4 bits".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from machine import machine, versions

RUNNER = """
import sys
from peftlab.config import load_config
from peftlab.methods.base import Method
from peftlab.training.train import train
if sys.argv[2] == "qlora-after":
    Method.quantization = lambda self, options, dtype: None  # load in full precision, quantize after
train(load_config(sys.argv[1]))
"""
LORA = {"rank": 16, "alpha": 32, "dropout": 0.05}
GB = 1e9


def run(contender: str, folder: Path, steps: int, precision: str) -> dict:
    name = f"{contender}-{len(list(folder.glob('*.yaml')))}"
    cfg = {
        "name": name,
        "output_dir": str(folder / "runs"),
        "model": {"name": "smollm2-135m"},
        "method": {"name": "lora" if contender == "lora" else "qlora", **LORA},
        "task": {"name": "sql_demo"},
        "train": {"max_steps": steps, "batch_size": 8, "eval_every": None, "precision": precision},
        "eval": {"batch_size": 16, "max_test": 16, "validate_untrained": False, "inference_cost": False},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, "-c", RUNNER, str(path), contender], check=True, capture_output=True)
    s = json.loads((folder / "runs" / name / "summary.json").read_text())
    return {
        "contender": contender,
        "train_peak_gb": s["peak_memory_bytes"] / GB,
        "run_peak_gb": s["run_peak_memory_bytes"] / GB,
        "test": s["test"],
        "seconds": s["train_seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    args = ap.parse_args()
    contenders = ["lora", "qlora", "qlora-after"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for contender in contenders:
                rows.append(run(contender, Path(tmp), args.steps, args.precision))
                print(f"round {r}: {rows[-1]}", flush=True)
    table = {
        c: {k: statistics.median(x[k] for x in rows if x["contender"] == c) for k in ("train_peak_gb", "run_peak_gb")}
        for c in contenders
    }
    print("| contender | training peak (GB) | whole-run peak (GB) |\n|---|---|---|")
    for c, m in table.items():
        print(f"| {c} | {m['train_peak_gb']:.2f} | {m['run_peak_gb']:.2f} |")
    out = Path(__file__).parent / "data" / f"qlora_memory_{args.precision}.json"
    record = {"args": vars(args), "machine": machine(), "versions": versions(), "runs": rows, "medians": table}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} (OMP threads: {os.environ.get('OMP_NUM_THREADS', 'default')})")


if __name__ == "__main__":
    main()
