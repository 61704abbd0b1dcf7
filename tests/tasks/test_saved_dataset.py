"""A dataset saved with ``datasets``' ``save_to_disk`` works as task.data_dir: a DatasetDict's splits
read by name (or as task.local_files maps them), one saved Dataset per split as a local file; a
missing split names what the folder has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from peftlab.errors import PeftlabError
from peftlab.task_config import TaskConfig
from peftlab.tasks.base import build_task


def rows_of(copy_task: dict, split: str) -> list[dict]:
    return [json.loads(line) for line in Path(copy_task["data_files"][split]).read_text().splitlines()]


def task_config(copy_task: dict, **where) -> TaskConfig:
    fields = {k: v for k, v in copy_task.items() if k != "data_files"}
    return TaskConfig(**fields, **where)


def save_dict(copy_task: dict, folder: Path, names=("train", "validation", "test")) -> None:
    splits = dict(zip(names, ("train", "validation", "test"), strict=True))
    DatasetDict({name: Dataset.from_list(rows_of(copy_task, split)) for name, split in splits.items()}).save_to_disk(
        str(folder)
    )


def test_a_saved_dataset_dict_gives_the_same_task_as_its_jsonl_files(copy_task, tmp_path):
    save_dict(copy_task, tmp_path / "saved")
    from_files = build_task(TaskConfig(**copy_task))
    saved = build_task(task_config(copy_task, data_dir=str(tmp_path / "saved")))
    for split in ("train", "validation", "test"):
        got = [(e.id, e.prompt, e.references) for e in saved.split(split)]
        assert got == [(e.id, e.prompt, e.references) for e in from_files.split(split)], split
        assert got, split


def test_split_names_are_mapped_by_local_files_and_a_missing_one_is_named(copy_task, tmp_path):
    save_dict(copy_task, tmp_path / "saved", names=("train", "dev", "test"))
    mapped = build_task(
        task_config(copy_task, data_dir=str(tmp_path / "saved"), local_files={"train": "train", "validation": "dev"})
    )
    assert [e.id for e in mapped.split("validation")] == [r["uid"] for r in rows_of(copy_task, "validation")]
    with pytest.raises(PeftlabError, match=r"has no split 'valid'; it has dev, test, train"):
        build_task(task_config(copy_task, data_dir=str(tmp_path / "saved"), local_files={"validation": "valid"}))


def test_one_saved_dataset_per_split_reads_as_a_local_file(copy_task, tmp_path):
    for split in ("train", "validation", "test"):
        Dataset.from_list(rows_of(copy_task, split)).save_to_disk(str(tmp_path / f"{split}_ds"))
    task = build_task(
        task_config(
            copy_task, data_dir=str(tmp_path), local_files={s: f"{s}_ds" for s in ("train", "validation", "test")}
        )
    )
    assert [e.id for e in task.split("test")] == [r["uid"] for r in rows_of(copy_task, "test")]


def test_a_saved_dataset_dict_given_as_one_file_says_to_use_data_dir(copy_task, tmp_path):
    save_dict(copy_task, tmp_path / "saved")
    with pytest.raises(PeftlabError, match=r"saved with save_to_disk holds several splits; give it as task.data_dir"):
        build_task(TaskConfig(**{**copy_task, "data_files": {"train": str(tmp_path / "saved")}}))
