"""The report's note on split overlap (report/overlap.py), read from summary.json's overlap."""

from __future__ import annotations

import json

from peftlab.report import build_report, write_report
from tests.report.fakes import fake_run

FOUND = {
    "exact": {"train_validation": 0, "train_test": 1, "validation_test": 0},
    "normalised": {"train_validation": 51, "train_test": 1, "validation_test": 7},
    "dropped_from_train": 60,
    "dedupe": "train",
}


NOTE = (
    "Split overlap (exact / once case, whitespace and punctuation are normalised): validation 0 / 51 and test "
    "1 / 1 inputs are also training inputs; 0 / 7 test inputs are validation inputs. 60 training examples with "
    "a validation or test input were dropped before training (task.dedupe: train)."
)


def with_overlap(run_dir, overlap: dict | None) -> None:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    summary["overlap"] = overlap
    path.write_text(json.dumps(summary))


def folder(root, *overlaps):
    for i, overlap in enumerate(overlaps):
        run = fake_run(root, f"r{i}", label=f"l{i}", method="lora", seed=0, example_scores=[1.0, 0.0])
        if overlap != "absent":
            with_overlap(run, overlap)
    return root


def notes(root) -> list[str]:
    (part,) = build_report(root).parts
    return part["notes"]


def test_dropped_training_copies_are_one_note_with_the_counts(tmp_path):
    root = folder(tmp_path, FOUND, FOUND)
    assert notes(root) == [NOTE]
    assert "60 training examples with a validation or test input were dropped" in write_report(root).read_text()


def test_kept_overlap_says_the_splits_overlap(tmp_path):
    (note,) = notes(folder(tmp_path, {**FOUND, "dedupe": "off", "dropped_from_train": 0}))
    assert note.startswith(NOTE.split(" 60 ")[0])
    assert note.endswith("The training copies were kept (task.dedupe: off): scores may reward memorising them.")


def test_disjoint_splits_and_validation_test_overlap_alone(tmp_path):
    clean = {**FOUND, "normalised": dict.fromkeys(FOUND["normalised"], 0), "exact": dict.fromkeys(FOUND["exact"], 0)}
    assert notes(folder(tmp_path / "a", clean)) == [
        "Splits checked for overlap: no input is shared between train, validation and test."
    ]
    only = {**clean, "normalised": {**clean["normalised"], "validation_test": 2}}
    (note,) = notes(folder(tmp_path / "b", only))
    assert note.endswith(": 0 / 2 test inputs are validation inputs. No training input is a validation or test input.")


def test_runs_that_differ_or_were_not_checked_are_named(tmp_path):
    root = folder(tmp_path, FOUND, "absent")
    first, second = notes(root)
    assert first == f"Runs r0: {NOTE}"
    assert second == "Runs r1: Splits not checked for overlap (runs written before peftlab counted it)."
