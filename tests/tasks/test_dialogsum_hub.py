"""DialogSum in its hub shape (knkarthick/dialogsum and its copies: columns id, dialogue, summary,
topic; the test split has one row per reference summary, ids test_0_1..test_0_3) must be scored
like the original release: one example per dialogue, all three summaries as references."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from peftlab.config import TaskConfig
from peftlab.errors import PeftlabError
from peftlab.tasks.base import build_task
from peftlab.tasks.catalog import resolve_task
from tests.conftest import SHARED_DATA

HUB_COLUMNS = ["id", "dialogue", "summary", "topic"]


def write(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HUB_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def hub_rows(split: str, dialogues: list[str], summaries: list[list[str]]) -> list[dict]:
    """The hub's layout: train/validation one row each (train_0, dev_0); test one row per reference."""
    if split != "test":
        prefix = "dev" if split == "validation" else split
        return [
            {"id": f"{prefix}_{k}", "dialogue": d, "summary": s[0], "topic": "t"}
            for k, (d, s) in enumerate(zip(dialogues, summaries))
        ]
    return [
        {"id": f"test_{k}_{j + 1}", "dialogue": d, "summary": ref, "topic": "t"}
        for k, (d, s) in enumerate(zip(dialogues, summaries))
        for j, ref in enumerate(s)
    ]


def dialogsum(folder: Path, **task) -> TaskConfig:
    return TaskConfig(**resolve_task({"name": "dialogsum", "data_dir": str(folder), **task}, "test"))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_hub_shaped_dialogsum_gives_one_example_per_dialogue_with_three_references(tmp_path, suffix):
    dialogues = [f"#Person1#: hello {k}\n#Person2#: hi, number {k}." for k in range(5)]
    summaries = [[f"Person1 greets {k}.", f"They say hello {k}.", f"Two people meet {k}."] for k in range(5)]
    for split in ("train", "validation", "test"):  # other dialogues in each split (task.dedupe)
        own = dialogues if split == "test" else [f"{d} ({split})" for d in dialogues]
        write(tmp_path / f"{split}{suffix}", hub_rows(split, own, summaries))
    names = {s: f"{s}{suffix}" for s in ("train", "validation", "test")}
    task = build_task(dialogsum(tmp_path, local_files=names))
    test = task.split("test")
    assert len(test) == 5, [e.id for e in test]
    assert [e.references for e in test] == summaries
    assert [e.id for e in task.split("train")] == [f"train_{k}" for k in range(5)]  # the hub's ids, not row numbers


@pytest.mark.skipif(not (SHARED_DATA / "dialogsum").is_dir(), reason="needs ../shared/data/dialogsum")
def test_the_real_test_split_in_hub_shape_is_500_dialogues_with_3_references(tmp_path):
    original = [json.loads(line) for line in (SHARED_DATA / "dialogsum" / "test.jsonl").open(encoding="utf-8")]
    dialogues = [r["dialogue"] for r in original]
    summaries = [[r[f"summary{j}"] for j in (1, 2, 3)] for r in original]
    write(tmp_path / "test.jsonl", hub_rows("test", dialogues, summaries))
    assert len((tmp_path / "test.jsonl").read_text().splitlines()) == 1500
    task = build_task(dialogsum(tmp_path, local_files={"test": "test.jsonl"}))
    test = task.split("test")
    assert len(test) == 500 and all(len(e.references) == 3 for e in test)
    assert [e.references for e in test] == summaries


def test_a_configured_id_field_that_is_absent_is_an_error_naming_file_and_columns(tmp_path):
    write(tmp_path / "test.jsonl", [{"id": "a", "dialogue": "x", "summary": "y", "topic": "t"}])
    cfg = dialogsum(tmp_path, local_files={"test": "test.jsonl"}, id_field="fname")
    with pytest.raises(PeftlabError) as err:
        build_task(cfg)
    message = str(err.value)
    assert "test.jsonl" in message and "task.id_field" in message and "'fname'" in message
    assert "columns found: id, dialogue, summary, topic" in message and "null" in message


def test_a_row_without_the_id_is_named(tmp_path):
    rows = [{"id": "a", "dialogue": "x", "summary": "y"}, {"dialogue": "z", "summary": "w"}]
    write(tmp_path / "test.jsonl", rows)
    with pytest.raises(PeftlabError, match=r"test.jsonl row 2: no id in field 'id'"):
        build_task(dialogsum(tmp_path, local_files={"test": "test.jsonl"}))
