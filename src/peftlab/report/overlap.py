"""The report's note on split overlap: what summary.json's overlap says about a comparison's splits
(tasks/overlap.py counted it when the task was prepared)."""

from __future__ import annotations

import json

from peftlab.report.aggregate import Comparison
from peftlab.rundir.summary import Overlap

PAIR_NAMES = {"train_validation": "validation", "train_test": "test"}


def overlap_notes(comp: Comparison) -> list[str]:
    """One note per distinct overlap record among the comparison's runs (one, when they share a task's
    preparation), naming the runs only when they differ; a note for runs that were not checked."""
    groups: dict[str, tuple[Overlap, list[str]]] = {}
    unchecked = []
    for run in comp.runs:
        found = run.summary.overlap
        if found is None:
            unchecked.append(run.name)
            continue
        key = json.dumps(found.model_dump(), sort_keys=True)
        groups.setdefault(key, (found, []))[1].append(run.name)
    several = len(groups) + bool(unchecked) > 1
    notes = [_prefix(names, several) + describe(found) for found, names in groups.values()]
    if unchecked:
        notes.append(
            _prefix(unchecked, several) + "Splits not checked for overlap (runs written before peftlab counted it)."
        )
    return notes


def describe(found: Overlap) -> str:
    """Split overlap in words: the counts (exact / normalised) and what was done about them."""
    norm, exact = found.normalised, found.exact
    if not any(norm.values()):
        return "Splits checked for overlap: no input is shared between train, validation and test."
    counts = [f"{split} {exact.get(pair, 0)} / {norm[pair]}" for pair, split in PAIR_NAMES.items() if norm.get(pair)]
    shared = [f"{' and '.join(counts)} inputs are also training inputs"] if counts else []
    if norm.get("validation_test"):
        shared.append(
            f"{exact.get('validation_test', 0)} / {norm['validation_test']} test inputs are validation inputs"
        )
    head = f"Split overlap (exact / once case, whitespace and punctuation are normalised): {'; '.join(shared)}."
    if not counts:
        return f"{head} No training input is a validation or test input."
    if found.dedupe == "off":
        return f"{head} The training copies were kept (task.dedupe: off): scores may reward memorising them."
    return (
        f"{head} {found.dropped_from_train} training examples with a validation or test input were dropped "
        "before training (task.dedupe: train)."
    )


def _prefix(names: list[str], several: bool) -> str:
    return f"Runs {', '.join(names)}: " if several else ""
