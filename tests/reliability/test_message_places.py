"""Messages say what is actually wrong: a folder where a file belongs is not 'not found', a null target is
not a missing field, and an unmapped label is checked against label_words' keys, not its words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peftlab.cli import main
from peftlab.config import TaskConfig
from peftlab.errors import PeftlabError
from peftlab.tasks.base import build_task


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_null_target_is_not_reported_as_missing(tmp_path, copy_task):
    rows = [{"uid": "a", "word": "x", "answer": "x"}, {"uid": "b", "word": "y", "answer": None}]
    files = {**copy_task["data_files"], "train": write_rows(tmp_path / "t.jsonl", rows)}
    with pytest.raises(PeftlabError) as e:
        build_task(TaskConfig(**{**copy_task, "data_files": files}))
    assert "row 2" in str(e.value) and "'answer' is None" in str(e.value) and "no target field" not in str(e.value)


def test_unmapped_label_lists_the_label_words_keys(tmp_path):
    rows = {s: [{"uid": f"{s}{i}", "text": f"{s} {i}", "label": i % 2} for i in range(3)] for s in ("train", "test")}
    rows["validation"] = [{"uid": "v0", "text": "meh", "label": 7}]
    task = TaskConfig(
        name="sent",
        data_files={s: write_rows(tmp_path / f"{s}.jsonl", r) for s, r in rows.items()},
        input_template="{text}",
        target_field="label",
        id_field="uid",
        output_type="classify",
        metric="accuracy",
        label_words={0: "negative", 1: "positive"},
    )
    with pytest.raises(PeftlabError) as e:
        build_task(task)
    assert "label '7' is not a key of task.label_words [0, 1]" in str(e.value), str(e.value)


def test_a_folder_given_as_a_data_file_is_named_a_folder(tmp_path, copy_task):
    (tmp_path / "dir.jsonl").mkdir()
    files = {**copy_task["data_files"], "train": str(tmp_path / "dir.jsonl")}
    with pytest.raises(PeftlabError, match="is a folder, not a file"):
        build_task(TaskConfig(**{**copy_task, "data_files": files}))


def test_a_file_given_as_data_dir_is_named_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    task = TaskConfig(name="t", data_dir=str(tmp_path / "f"), local_files={"train": "a.jsonl"})
    with pytest.raises(PeftlabError, match="task.data_dir: a file, not a folder"):
        build_task(task)


@pytest.mark.parametrize("command", ["train", "compare", "check"])
def test_a_folder_given_as_the_config_file_is_named_a_folder(tmp_path, capsys, command):
    assert main([command, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder, not a file" in err and "not found" not in err, err
