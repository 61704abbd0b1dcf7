"""Inputs shared between splits (tasks/overlap.py): counted exactly and normalised, dropped from train
by default (task.dedupe: train), kept with task.dedupe: off, and recorded in the log and summary.json."""

from __future__ import annotations

import json

import pytest
import yaml

from peftlab.config import TaskConfig, load_config
from peftlab.errors import PeftlabError
from peftlab.tasks.base import build_task
from peftlab.tasks.overlap import normalise

# Hand-built splits with known duplicates: (id, text).
TRAIN = [
    ("t0", "The cat sat."),  # = test t-cat exactly
    ("t1", "the CAT  sat"),  # = test t-cat once normalised (case, spacing, the full stop)
    ("t2", "Hello, world!"),  # = validation v-hello once normalised
    ("t3", "a sentence of its own"),
    ("t4", "Good movie"),  # = validation v-good exactly; = test t-good once normalised
    ("t5", "good-movie maker"),  # 'good movie maker': no split has it
]
VALIDATION = [
    ("v-good", "Good movie"),
    ("v-hello", "hello world"),
    ("v-own", "only in validation"),
    ("v-vt", "shared vt"),
]
TEST = [("t-cat", "The cat sat."), ("t-good", "GOOD movie?"), ("t-own", "only in test"), ("t-vt", "Shared, VT!")]
# Hand-counted: examples of the second split whose input the first split has.
EXACT = {"train_validation": 1, "train_test": 1, "validation_test": 0}  # v-good; t-cat; none
NORMALISED = {"train_validation": 2, "train_test": 2, "validation_test": 2}  # +v-hello; +t-good; t-good, t-vt
DROPPED = {"t0", "t1", "t2", "t4"}


def write(folder, splits: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    files = {}
    for split, rows in splits.items():
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps({"uid": i, "text": t, "label": "x"}) + "\n" for i, t in rows))
        files[split] = str(path)
    return files


def task_config(tmp_path, splits=None, **extra) -> TaskConfig:
    splits = splits or {"train": TRAIN, "validation": VALIDATION, "test": TEST}
    return TaskConfig(
        name="toy",
        data_files=write(tmp_path, splits),
        input_template="Text: {text}",
        target_field="label",
        id_field="uid",
        metric="exact_match",
        **extra,
    )


def test_normalise_folds_case_spacing_and_punctuation():
    assert normalise("  Hello,\tWORLD!! ") == "hello world" == normalise("hello world")
    assert normalise("“Quoted” — text…") == "quoted text"
    assert normalise("good-movie") == normalise("good movie") != normalise("goodmovie")


def test_counts_equal_the_hand_counted_ones_and_exactly_the_duplicates_leave_train(tmp_path):
    log: list[str] = []
    task = build_task(task_config(tmp_path), log=log.append)
    assert task.overlap == {"exact": EXACT, "normalised": NORMALISED, "dropped_from_train": 4, "dedupe": "train"}
    assert [e.id for e in task.split("train")] == [i for i, _ in TRAIN if i not in DROPPED]
    # evaluation splits stay as they are
    assert [e.id for e in task.split("validation")] == [i for i, _ in VALIDATION]
    assert [e.id for e in task.split("test")] == [i for i, _ in TEST]
    line = next(line for line in log if "shared between splits" in line)
    assert "train-validation 1/2, train-test 1/2, validation-test 0/2" in line
    assert "4 training examples dropped" in line


def test_dedupe_off_keeps_train_and_says_the_splits_overlap(tmp_path):
    log: list[str] = []
    task = build_task(task_config(tmp_path, dedupe="off"), log=log.append)
    assert task.overlap == {"exact": EXACT, "normalised": NORMALISED, "dropped_from_train": 0, "dedupe": "off"}
    assert [e.id for e in task.split("train")] == [i for i, _ in TRAIN]
    assert any("kept in train (task.dedupe: off)" in line for line in log), log


def test_disjoint_splits_are_said_to_be_checked(tmp_path):
    splits = {"train": [("a", "one")], "validation": [("b", "two")], "test": [("c", "three")]}
    log: list[str] = []
    task = build_task(task_config(tmp_path, splits), log=log.append)
    assert task.overlap["dropped_from_train"] == 0 and not any(task.overlap["normalised"].values())
    assert any("no input shared" in line for line in log)


def test_a_train_split_made_only_of_evaluation_inputs_is_an_error_not_an_empty_train(tmp_path):
    splits = {"train": [("a", "Same!"), ("b", "other")], "validation": [("v", "same")], "test": [("t", "OTHER")]}
    with pytest.raises(
        PeftlabError, match=r"task toy: all 2 training examples .* leave train empty.*task\.dedupe: off"
    ):
        build_task(task_config(tmp_path, splits))
    kept = build_task(task_config(tmp_path, splits, dedupe="off"))
    assert len(kept.split("train")) == 2


def test_a_bad_dedupe_value_names_the_key_and_the_allowed_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"task": {"name": "sql_demo", "dedupe": "both"}, "train": {"max_steps": 1}}))
    with pytest.raises(PeftlabError, match=r"task\.dedupe: Input should be 'train' or 'off' \(got 'both'\)"):
        load_config(path)


def test_held_out_validation_and_the_test_are_both_kept_out_of_train(tmp_path):
    # No validation split: validation is held out of train (tasks/holdout.py), never from training rows
    # that are test inputs (seed 0 would draw dup-exact here); then train is checked against both.
    train = [(f"r{i}", f"row number {i} says {w}") for i, w in enumerate("abcdefghijklmnopqrst")]
    train += [("dup-exact", "Only in test"), ("dup-case", "ALSO IN TEST!")]
    test = [("x0", "Only in test"), ("x1", "also in test"), ("x2", "nowhere else")]
    log: list[str] = []
    task = build_task(task_config(tmp_path, {"train": train, "test": test}), log=log.append)
    assert len(task.split("validation")) == 2  # a tenth of the 22 training rows
    assert task.overlap["exact"]["train_test"] == 1 and task.overlap["normalised"]["train_test"] == 2
    assert task.overlap["normalised"]["validation_test"] == 0  # validation holds no test input
    assert task.overlap["dropped_from_train"] == 2
    ids = {e.id for e in task.split("train")}
    assert not ids & {"dup-exact", "dup-case"} and not ids & {e.id for e in task.split("validation")}
    held = {normalise(e.prompt) for e in task.split("validation")}
    assert not held & {normalise(e.prompt) for e in task.split("train")}
    assert any("held out as validation" in line for line in log)


def test_the_built_in_sql_demo_is_checked_and_keeps_its_train(tmp_path):
    task = build_task(TaskConfig(name="sql_demo"))
    assert task.overlap["dedupe"] == "train" and set(task.overlap["normalised"]) == {
        "train_validation",
        "train_test",
        "validation_test",
    }
    assert len(task.split("train")) == 400 - task.overlap["dropped_from_train"] > 0


def test_demonstrations_are_drawn_from_the_decontaminated_train(tmp_path):
    task = build_task(task_config(tmp_path, shots=2, shots_seed=3))
    demos = task.split("test")[0].prompt.split("\n\n")[:2]
    kept = {f"Text: {t}" for i, t in TRAIN if i not in DROPPED}
    assert all(d.split("\n")[0] in kept for d in demos), demos


def test_a_run_records_the_overlap_in_summary_json(tmp_path):
    from peftlab.training.train import train

    path = tmp_path / "run.yaml"
    cfg = {
        "name": "toy-run",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "none"},
        "task": task_config(tmp_path).model_dump(exclude_unset=True),
        "eval": {"batch_size": 4},
    }
    path.write_text(yaml.safe_dump(cfg))
    summary = json.loads((train(load_config(path)) / "summary.json").read_text())
    assert summary["overlap"] == {"exact": EXACT, "normalised": NORMALISED, "dropped_from_train": 4, "dedupe": "train"}


def test_a_run_written_before_task_dedupe_is_not_the_same_run_as_a_decontaminated_one():
    from peftlab.config import ExperimentConfig, dump_config, same_config

    cfg = ExperimentConfig.model_validate({"task": {"name": "sql_demo"}, "train": {"max_steps": 3}})
    older = yaml.safe_load(dump_config(cfg))
    del older["task"]["dedupe"]  # trained on every training row: not this run
    assert not same_config(cfg)(yaml.safe_dump(older, sort_keys=False))
    kept = cfg.model_copy(update={"task": cfg.task.model_copy(update={"dedupe": "off"})})
    assert same_config(kept)(yaml.safe_dump(older, sort_keys=False))
