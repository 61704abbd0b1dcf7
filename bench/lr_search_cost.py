"""What compare's lr search costs on the demo's task: full fine-tuning and LoRA on the bundled SmolLM2 at
the demo's budget, batch and validation, one seed, run as two comparisons, one after the other: with
`lr_search: off` (one run per method) and with the search (default: x1/3, x1, x3 of each method's lr,
one rung at 1/3 of the budget). Prints training FLOPs, train seconds and each comparison's wall time,
search + run against one run.

    .venv/bin/python bench/lr_search_cost.py [--steps 30] [--out runs/bench-lr-search] [--search '{rungs: [0.34]}']

Both comparisons start from empty folders (the bundled model's cache is made first, outside the timing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from machine import machine, versions

from peftlab.comparison.demo import DEMO_STEPS, demo_experiment
from peftlab.comparison.lr_choice import found, search_cost
from peftlab.models.bundled import ensure_cached


def run_compare(folder: Path, steps: int, search, model: str) -> float:
    """Write the comparison and run it with `peftlab compare`; returns its wall seconds."""
    exp = demo_experiment(folder, steps, model, lr_search=True)  # no recorded lrs: this measures the search
    exp["methods"] = [m for m in exp["methods"] if m["name"] != "none"]
    exp["lr_search"] = search
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / "compare.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "peftlab", "compare", str(path)], check=True)
    return time.perf_counter() - t0


def runs(folder: Path) -> dict[str, dict]:
    return {p.parent.name.rsplit("-s", 1)[0]: json.loads(p.read_text()) for p in folder.glob("*/summary.json")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=DEMO_STEPS)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-lr-search"))
    ap.add_argument("--search", default="{}", help="the lr_search section as YAML ({} = the default)")
    ap.add_argument("--model", default="smollm2-135m", help="another model (tiny-llama: a quick check of this script)")
    a = ap.parse_args()
    if a.model == "smollm2-135m":
        ensure_cached(a.model, log=print)
    search = yaml.safe_load(a.search)
    load = os.getloadavg()[0]
    wall_off = run_compare(a.out / "off", a.steps, "off", a.model)
    wall_on = run_compare(a.out / "search", a.steps, search, a.model)
    off, on = runs(a.out / "off"), runs(a.out / "search")
    extra = search_cost(a.out / "search")
    chosen = {c.label: c for c in found(a.out / "search")}
    print(
        f"\n{json.dumps({**machine(), **versions()})}\nload average before: {load:.2f}, after: {os.getloadavg()[0]:.2f}"
    )
    print(f"lr_search: {search}\n")
    print("| method | lr (off) | chosen lr | test off | test search | FLOPs: (search + run) / run | train s: same |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label in sorted(off):
        f, s = extra[label]
        run_f, run_s = on[label]["flops"], on[label]["train_seconds"]
        test_off, test_on = (r[label]["test"][r[label]["primary_metric"]] for r in (off, on))
        print(
            f"| {label} | {off[label]['lr']:.3g} | {chosen[label].chosen:.3g} | {test_off:.3f} | {test_on:.3f} | "
            f"{(run_f + f) / run_f:.2f} ({(run_f + f) / 1e12:.1f}T / {off[label]['flops'] / 1e12:.1f}T) | "
            f"{(run_s + s) / run_s:.2f} ({run_s + s:.0f} / {off[label]['train_seconds']:.0f} s) |"
        )
    print(f"\ncompare wall: {wall_on:.0f} s with the search, {wall_off:.0f} s without: x{wall_on / wall_off:.2f}")


if __name__ == "__main__":
    main()
