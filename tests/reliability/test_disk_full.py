"""A disk that is full, read-only or not a folder: refused before training when it can be known, and a
write that fails mid-run stops the run with exit 2, the file and the free space named, the last
checkpoint intact, and a rerun that resumes and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import yaml
from safetensors import SafetensorError

import peftlab.rundir.summary as summary_module
import peftlab.training.checkpoint as checkpoint_module
import peftlab.training.run as run_module
from peftlab.cli import main
from peftlab.config import load_config
from peftlab.errors import PeftlabError
from peftlab.rundir import diskspace
from peftlab.training.train import train
from tests.reliability.short_run import config_path, outcome

FULL = "No space left on device"


def saved_step(run_dir) -> int:
    return json.loads((run_dir / "checkpoint" / "state.json").read_text())["step"]


def resume_and_compare(tmp_path, copy_task, run_dir, capsys, at: int) -> None:
    """A rerun resumes from the checkpoint at ``at`` and ends exactly like an uninterrupted run."""
    assert main(["train", "--resume", str(run_dir)]) == 0
    flat = "".join(capsys.readouterr().err.split())
    assert f"resumingfromthecheckpointatstep{at}" in flat
    straight = train(load_config(config_path(tmp_path, copy_task, "straight")))
    assert outcome(run_dir) == outcome(straight)


def test_free_space_is_checked_against_two_checkpoints_the_adapter_and_predictions(tmp_path):
    need = diskspace.run_bytes(trainable=1_000_000, prediction_bytes=50_000)
    # Two checkpoints of 4 fp32 copies (weights, best weights, AdamW's two moments), the adapter and the
    # run folder's best weights.
    assert need > 2 * 4 * 4 * 1_000_000 + 2 * 4 * 1_000_000 + 50_000
    assert need < 2 * (2 * 4 * 4 * 1_000_000 + 4 * 1_000_000 + 50_000) + (64 << 20)
    diskspace.check_free_space(tmp_path, need, free=need)  # exactly enough: no error
    with pytest.raises(PeftlabError) as e:
        diskspace.check_free_space(tmp_path, need, free=need - 1)
    message = str(e.value)
    assert str(tmp_path) in message and "free" in message and "output_dir" in message


def test_an_output_dir_that_is_a_file_or_read_only_is_an_error_naming_it(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PeftlabError, match=r"output_dir: .*a-file.* is a file, not a folder"):
        diskspace.ensure_writable_dir(blocker / "cmp", "output_dir")

    def read_only(*args, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(diskspace.tempfile, "mkstemp", read_only)
    with pytest.raises(PeftlabError, match=r"output_dir: cannot write .*ro.*Read-only file system"):
        diskspace.ensure_writable_dir(tmp_path / "ro", "output_dir")


def test_compare_into_an_output_dir_that_is_a_file_exits_2_naming_it(tmp_path, copy_task, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    exp = {
        "name": "cmp",
        "output_dir": str(blocker),
        "model": {"name": "tiny-llama"},
        "task": copy_task,
        "budget": {"steps": 2},
        "seeds": [0],
        "trackers": [],
        "methods": [{"name": "lora", "rank": 2}],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    assert main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert "output_dir" in err and str(blocker) in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_a_full_disk_at_the_metrics_append_stops_the_run_and_a_rerun_resumes(tmp_path, copy_task, monkeypatch, capsys):
    real = run_module.append_jsonl

    def full_at_step_7(path, record):
        if record.get("step") == 7 and "train_loss" in record:
            with path.open("a") as f:
                f.write('{"step": 7, "tr')  # the disk filled in the middle of the line
            raise OSError(errno.ENOSPC, FULL)  # what file.write raises: no file name
        real(path, record)

    monkeypatch.setattr(run_module, "append_jsonl", full_at_step_7)
    path = config_path(tmp_path, copy_task, "full")
    run_dir = tmp_path / "runs" / "full"
    assert main(["train", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(run_dir / "metrics.jsonl") in err and FULL in err
    assert "free on that disk" in err and "checkpoint at step 6 is intact" in err
    assert f"peftlab train --resume {run_dir}" in err
    assert saved_step(run_dir) == 6 and not (run_dir / "summary.json").exists()
    monkeypatch.setattr(run_module, "append_jsonl", real)
    resume_and_compare(tmp_path, copy_task, run_dir, capsys, at=6)


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, copy_task, monkeypatch, capsys):
    real = checkpoint_module.save_file
    saves = {"optimizer": 0}

    def full_at_the_third_optimizer_file(tensors, filename, *args, **kw):
        if str(filename).endswith("optimizer.safetensors"):
            saves["optimizer"] += 1
            if saves["optimizer"] == 3:  # the checkpoint of step 6
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, *args, **kw)

    monkeypatch.setattr(checkpoint_module, "save_file", full_at_the_third_optimizer_file)
    run_dir = tmp_path / "runs" / "full"
    assert main(["train", str(config_path(tmp_path, copy_task, "full"))]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "optimizer.safetensors" in err and FULL in err and "checkpoint at step 4 is intact" in err
    assert saved_step(run_dir) == 4
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".checkpoint")]  # no half-written copy left
    monkeypatch.setattr(checkpoint_module, "save_file", real)
    resume_and_compare(tmp_path, copy_task, run_dir, capsys, at=4)


def test_a_full_disk_at_the_summary_loses_nothing(tmp_path, copy_task, monkeypatch, capsys):
    def full(path, data):
        raise OSError(errno.ENOSPC, FULL)

    monkeypatch.setattr(summary_module, "write_json", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12 - 1234, 1234))
    monkeypatch.setattr(diskspace, "check_free_space", lambda *a, **kw: None)  # the start's check would refuse
    run_dir = tmp_path / "runs" / "full"
    assert main(["train", str(config_path(tmp_path, copy_task, "full"))]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(run_dir / "summary.json") in err and "1.2 KB free on that disk" in err
    assert saved_step(run_dir) == 8  # the run's last checkpoint is kept until the summary is written
    monkeypatch.undo()
    resume_and_compare(tmp_path, copy_task, run_dir, capsys, at=8)
