"""How fast could a finished comparison have trained? Its training FLOPs against this machine's matmul peak.

    .venv/bin/python bench/compare_floor.py RUNS/dialogsum-compare [--precision fp32] \
        [--reference-seconds 1309 --speedup 2] [--out runs/bench/compare_floor.json]

A comparison gives every training method the same FLOP budget (counted on the padded shapes the
step computes), so its training time can never fall below (the runs' training FLOPs) / (the
machine's matmul peak in the dtype the runs computed in), whatever the code does. This reads each
run's summary.json (FLOPs, train, eval and wall seconds), measures the peak here as
bench/roofline.py does (large square matmuls, the best size's median), and prints each run's
achieved FLOP rate, its fraction of the peak, and the training floor.

With --reference-seconds (an earlier wall time of the same comparison, measured on this machine) and
--speedup, it also says what a target of ``reference / speedup`` would leave for evaluation and the
rest once training ran at the peak: the time a target cannot be met in whatever the evaluation does.
Run it alone on the machine: the peak is measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import torch
from machine import machine, versions
from roofline import matmul_peak

from peftlab.rundir.summary import RunSummary

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", type=Path, help="a finished comparison's folder (its runs' summary.json)")
    ap.add_argument("--precision", choices=sorted(DTYPES), default="fp32", help="the dtype of the peak (fp32)")
    ap.add_argument("--reference-seconds", type=float, help="an earlier wall time of this comparison, here")
    ap.add_argument("--speedup", type=float, default=2.0, help="the target: reference / speedup (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="peak measurements; the median is used (default 3)")
    ap.add_argument("--out", type=Path, help="write the figures to this JSON file")
    a = ap.parse_args()
    if not a.experiment.is_dir():
        ap.error(f"{a.experiment}: no such folder (give a comparison's output folder, with its runs in it)")
    return a


def summaries(folder: Path) -> list[RunSummary]:
    runs = [RunSummary.read(p) for p in sorted(folder.glob("*/summary.json"))]
    if not runs:
        sys.exit(f"{folder}: no */summary.json here (is it a finished comparison's folder?)")
    dtypes = {r.compute_dtype for r in runs if r.trains}
    if len(dtypes) > 1:
        sys.exit(f"{folder}: the runs computed in {sorted(dtypes)}; one peak cannot bound them all")
    return runs


def floor_table(runs: list[RunSummary], peak: float) -> list[dict]:
    rows = []
    for r in runs:
        rate = r.flops / r.train_seconds if r.trains and r.train_seconds else None
        rows.append(
            {
                "run": r.run,
                "flops": r.flops,
                "train_seconds": r.train_seconds,
                "eval_seconds": r.eval_seconds,
                "wall_seconds": r.wall_seconds,
                "gflop_per_s": rate / 1e9 if rate else None,
                "fraction_of_peak": rate / peak if rate else None,
                "train_floor_seconds": r.flops / peak,
            }
        )
    return rows


def print_report(rows: list[dict], peak: float, a: argparse.Namespace) -> dict:
    print(f"| run | training FLOPs | train s | GFLOP/s | of the {a.precision} peak | train s at the peak | eval s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rate = f"{r['gflop_per_s']:.0f}" if r["gflop_per_s"] else "-"
        share = f"{r['fraction_of_peak']:.0%}" if r["fraction_of_peak"] else "-"
        print(
            f"| {r['run']} | {r['flops'] / 1e12:.1f} T | {r['train_seconds']:.0f} | {rate} | {share} "
            f"| {r['train_floor_seconds']:.0f} | {r['eval_seconds']:.0f} |"
        )
    total = {k: sum(r[k] for r in rows) for k in ("flops", "train_seconds", "eval_seconds", "wall_seconds")}
    floor = total["flops"] / peak
    total.update(train_floor_seconds=floor, fraction_of_peak=floor / total["train_seconds"])
    print(
        f"\nAll runs: {total['flops'] / 1e12:.1f} T training FLOPs in {total['train_seconds']:.0f} s "
        f"({total['flops'] / total['train_seconds'] / 1e9:.0f} GFLOP/s, {total['fraction_of_peak']:.0%} of the "
        f"{peak / 1e9:.0f} GFLOP/s {a.precision} matmul peak). At the peak, training takes {floor:.0f} s."
    )
    print(
        f"Evaluation {total['eval_seconds']:.0f} s; the rest (process start, loading, checkpoints) "
        f"{total['wall_seconds'] - total['train_seconds'] - total['eval_seconds']:.0f} s (sum of the runs' walls)."
    )
    if a.reference_seconds:
        target = a.reference_seconds / a.speedup
        total.update(target_seconds=target, left_at_peak=target - floor)
        print(
            f"Target {a.reference_seconds:.0f} s / {a.speedup:g} = {target:.0f} s: with training at the peak, "
            f"{target - floor:.0f} s are left for evaluation and the rest (now "
            f"{total['wall_seconds'] - total['train_seconds']:.0f} s)."
        )
    return total


def main() -> None:
    a = parse_args()
    runs = summaries(a.experiment)
    peaks = [max(matmul_peak(torch.device("cpu"), DTYPES[a.precision]).values()) for _ in range(a.repeats)]
    peak = statistics.median(peaks)
    print(f"{a.precision} matmul peak here: {peak / 1e9:.0f} GFLOP/s (rounds {[round(p / 1e9) for p in peaks]})\n")
    rows = floor_table(runs, peak)
    total = print_report(rows, peak, a)
    if a.out:
        record = {
            "command": " ".join(sys.argv),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"),
            "machine": {**machine(), **versions()},
            "peak_flop_per_s": peak,
            "peaks": peaks,
            "runs": rows,
            "total": total,
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
