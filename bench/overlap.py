"""Inputs shared between the splits of the bundled data, as task preparation counts them.

    .venv/bin/python bench/overlap.py                 # ~20 s on 2 CPU cores
    .venv/bin/python bench/overlap.py --data /path/to/shared/data --tasks emotion dialogsum

For each packaged task read from its folder under --data (default ../shared/data), builds the task
as `peftlab train` does (task.dedupe: train, the default) and prints one JSON line: the counts per
pair of splits (exact, and once case, whitespace and punctuation are normalised; a count is of the
second split's examples whose input the first split has), the training examples dropped, the split
sizes after it, a few of the shared inputs (first split's id = second split's id) and, on
classification tasks, how many shared inputs carry another label in the other split. The built-in
sql_demo is checked too (it needs no data).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from peftlab.config import TaskConfig
from peftlab.tasks.base import build_task
from peftlab.tasks.catalog import resolve_task
from peftlab.tasks.overlap import normalise

TASKS = ("dialogsum", "emotion", "sst2", "geoquery", "sql_demo")


def shared(task, first: str, second: str) -> list[tuple[str, str, str, str]]:
    """(first id, second id, first target, second target) of inputs the two splits share (normalised)."""
    by_input = {normalise(e.prompt): e for e in task.splits.get(first, [])}
    out = []
    for e in task.splits.get(second, []):
        other = by_input.get(normalise(e.prompt))
        if other is not None:
            out.append((other.id, e.id, other.target, e.target))
    return out


def check(name: str, data: Path) -> dict:
    section = {"name": name} if name == "sql_demo" else {"name": name, "data_dir": str(data / name)}
    cfg = TaskConfig(**resolve_task(section, "bench"))
    t0 = time.perf_counter()
    kept = build_task(cfg.model_copy(update={"dedupe": "off"}))  # before dropping: which inputs are shared
    seconds = time.perf_counter() - t0
    task = build_task(cfg)
    pairs = {f"{a}_{b}": shared(kept, a, b) for a, b in (("train", "validation"), ("train", "test"))}
    pairs["validation_test"] = shared(kept, "validation", "test")
    return {
        "task": name,
        **task.overlap,
        "sizes_before": {s: len(v) for s, v in kept.splits.items()},
        "sizes_after": {s: len(v) for s, v in task.splits.items()},
        **(
            {"other_label": {p: sum(a != b for *_, a, b in rows) for p, rows in pairs.items()}}
            if task.output_type == "classify"
            else {}
        ),
        "examples": {p: [f"{a}={b}" for a, b, *_ in rows[:3]] for p, rows in pairs.items() if rows},
        "prepare_seconds": round(seconds, 1),
    }


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=here.parent / "shared" / "data")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = parser.parse_args()
    for name in args.tasks:
        if name != "sql_demo" and not (args.data / name).is_dir():
            print(json.dumps({"task": name, "skipped": f"no folder {args.data / name}"}))
            continue
        print(json.dumps(check(name, args.data)), flush=True)


if __name__ == "__main__":
    main()
