"""Where a label departs from the rest of its comparison or from its method's paper, found from the
run folders so that the number is labelled where it is shown (the leaderboard row's † and note).

- Training settings a method entry may set for itself (compare's METHOD_TRAIN_KEYS) that change what
  it was given rather than how it was optimised: its warmup, schedule or gradient checkpointing
  (which changes the cost columns). The comparison's value is the one most trained labels use; a
  label with another gets the mark, as `override:` settings do.
- A method's own departures from its paper (``Method.deviations``, recorded in summary.json): e.g.
  UniPELT's per-layer prefix gate.
"""

from __future__ import annotations

from collections import Counter

from peftlab.report.runs import Run

TRAIN_KEYS = ("warmup_ratio", "schedule", "gradient_checkpointing")


def train_value(run: Run, key: str) -> object:
    return (run.config.get("train") or {}).get(key)


def train_deviations(by_label: dict[str, list[Run]]) -> dict[str, list[str]]:
    """label -> 'train.<key> <value> (the comparison's: <value>)' for each key it sets unlike most labels."""
    trained = {label: runs[0] for label, runs in by_label.items() if runs[0].trains and runs[0].config}
    out: dict[str, list[str]] = {}
    for key in TRAIN_KEYS:
        counts = Counter(repr(train_value(r, key)) for r in trained.values())
        if len(counts) < 2:
            continue
        (common, n), (_, second) = counts.most_common(2)
        if n == second:  # no value most labels share: nothing to call a departure
            continue
        for label, run in trained.items():
            if repr(train_value(run, key)) != common:
                out.setdefault(label, []).append(f"train.{key} {train_value(run, key)} (the comparison's: {common})")
    return out


def method_deviations(runs: list[Run]) -> list[str]:
    return list(runs[0].summary.deviations or [])
