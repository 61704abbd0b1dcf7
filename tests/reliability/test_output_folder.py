"""An output folder that cannot be written, or a disk too small, stops the run before training."""

from __future__ import annotations

import shutil

import pytest
import yaml

from peftlab.config import load_config
from peftlab.errors import PeftlabError
from peftlab.training.train import train


def config(tmp_path, copy_task, output_dir):
    cfg = {
        "name": "r",
        "output_dir": str(output_dir),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 2},
        "task": copy_task,
        "train": {"max_steps": 2},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(tmp_path / "c.yaml")


def test_unwritable_output_folder_is_a_clear_error(tmp_path, copy_task):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PeftlabError, match="cannot write the run folder .*a-file/r"):
        train(config(tmp_path, copy_task, blocker))


def test_too_little_disk_space_is_refused_before_training(tmp_path, copy_task, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(PeftlabError, match="GB free but checkpoints and the adapter need about"):
        train(config(tmp_path, copy_task, tmp_path / "runs"))
    assert not (tmp_path / "runs" / "r" / "metrics.jsonl").exists()  # no training happened


def test_over_long_training_inputs_are_skipped_and_counted_when_asked(tmp_path, copy_task):
    import json

    rows = [{"uid": f"t{i}", "word": w, "answer": w} for i, w in enumerate(["ox", "elephant", "cat", "hippopotamus"])]
    train_file = tmp_path / "long.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The tiny models' tokenizer is bytewise: "Repeat: ox" is 10 tokens, "Repeat: elephant" 16.
    task = {
        **copy_task,
        "data_files": {**copy_task["data_files"], "train": str(train_file)},
        "max_source_tokens": 12,
        "too_long": "skip",
    }
    summary = json.loads((train(config(tmp_path, task, tmp_path / "runs")) / "summary.json").read_text())
    assert summary["skipped_long_train_examples"] == 2


def test_run_names_cannot_leave_the_output_folder(tmp_path, copy_task):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "../escape", "method": {"name": "none"}}))
    with pytest.raises(PeftlabError, match="name.*no slashes"):
        load_config(path)
