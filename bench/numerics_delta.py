"""Two runs of one comparison in different numerics (or code), label by label: the test score of each,
their difference and its 95% paired bootstrap interval over the test examples, and the wall-time split.

    .venv/bin/python bench/numerics_delta.py BEFORE_FOLDER AFTER_FOLDER

For example the DialogSum comparison run once in fp32 and once in bf16 (bench/RESULTS.md): a speed-up
that changes numerics must state a measured bound on the change next to its figure. The interval
is peftlab's own (report/ties.py: the same resampling as the leaderboard's ties, on the primary
metric, corpus metrics recomputed on each resample).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from peftlab.report.aggregate import compare_runs
from peftlab.report.costs import time_split
from peftlab.report.runs import load_runs
from peftlab.report.ties import bootstrap_difference, label_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    a = ap.parse_args()
    (before,), (after,) = compare_runs(load_runs(a.before)), compare_runs(load_runs(a.after))
    runs_b = {r.label: r for r in before.runs}
    runs_a = {r.label: r for r in after.runs}
    print(f"before: {a.before}\nafter: {a.after}\n")
    print(f"| label | before {before.metric} | after | after - before | 95% interval | wall s before | after |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for label in sorted(set(runs_b) & set(runs_a)):
        rb, ra = runs_b[label], runs_a[label]
        sb, sa = label_sample([rb]), label_sample([ra])
        ids = sorted(set(sb.ids) & set(sa.ids))
        diff, lo, hi = bootstrap_difference(sa.take(ids), sb.take(ids), sa.value)
        print(
            f"| {label} | {rb.score:.3f} | {ra.score:.3f} | {diff:+.3f} | [{lo:+.3f}, {hi:+.3f}] | "
            f"{rb.summary.wall_seconds:.0f} | {ra.summary.wall_seconds:.0f} |"
        )
    print(f"\nbefore: {time_split(before)}\nafter: {time_split(after)}")


if __name__ == "__main__":
    main()
