"""A damaged file is named, with what is wrong and what to do: a truncated adapter or a pickle named
.safetensors at eval/generate, and at resume a damaged checkpoint, which falls back to the previous
checkpoint (or, when none is readable, starts the run again and says so) and still ends exactly where
an uninterrupted run ends."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from peftlab.cli import main
from peftlab.config import load_config
from peftlab.errors import PeftlabError
from peftlab.training import checkpoint
from peftlab.training.train import train
from tests.reliability.short_run import config_path, outcome, said


@pytest.fixture
def finished(tmp_path, copy_task):
    return train(load_config(config_path(tmp_path, copy_task, "done")))


@pytest.fixture
def stopped(tmp_path, copy_task, monkeypatch):
    """A run killed after its checkpoint of step 6 (the one of step 5, at a validation, is the previous)."""
    save = checkpoint.save

    def save_then_crash(run_dir, trainable, optimizer, best, info, *rest):
        save(run_dir, trainable, optimizer, best, info, *rest)
        if info["step"] == 6:
            raise KeyboardInterrupt("killed after the checkpoint of step 6")

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(config_path(tmp_path, copy_task, "stopped")))
    monkeypatch.setattr(checkpoint, "save", save)
    return tmp_path / "runs" / "stopped"


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def resume(run_dir, capsys) -> str:
    assert main(["train", "--resume", str(run_dir)]) == 0
    return capsys.readouterr().err


def test_a_truncated_adapter_at_eval_names_the_file_and_what_to_do(finished, capsys):
    weights = finished / "adapter" / "adapter_model.safetensors"
    truncate(weights)
    assert main(["eval", str(finished)]) == 2
    err = capsys.readouterr().err
    # What to do: the adapter can only be made again (or restored from a copy).
    assert said(err, weights, "truncated", "peftlab train --overwrite") and "Traceback" not in err


def test_a_pickle_named_safetensors_at_generate_is_refused_not_unpickled(finished, capsys):
    weights = finished / "adapter" / "adapter_model.safetensors"
    torch.save({"w": torch.ones(2)}, weights)
    assert main(["generate", str(finished), "Repeat: apple"]) == 2
    assert said(capsys.readouterr().err, weights, "pickle", "not safetensors")


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, copy_task, stopped, capsys):
    weights = stopped / "checkpoint" / "trainable.safetensors"
    truncate(weights)
    out = resume(stopped, capsys)
    assert said(out, weights, "resuming from the previous checkpoint", "resuming from the checkpoint at step 5")
    assert outcome(stopped) == outcome(train(load_config(config_path(tmp_path, copy_task, "straight"))))


def test_a_damaged_state_json_falls_back_to_the_previous_checkpoint(stopped, capsys):
    state = stopped / "checkpoint" / "state.json"
    truncate(state, 0.7)
    out = resume(stopped, capsys)
    assert said(out, state, "not valid JSON", "resuming from the checkpoint at step 5")


def test_a_flipped_byte_is_caught_by_the_checksum(stopped, capsys):
    opt = stopped / "checkpoint" / "optimizer.safetensors"
    data = bytearray(opt.read_bytes())
    data[-3] ^= 0xFF  # same size, valid header: only the checksum can tell
    opt.write_bytes(bytes(data))
    out = resume(stopped, capsys)
    assert said(out, opt, "sha256", "resuming from the checkpoint at step 5")


def test_no_readable_checkpoint_starts_the_run_again_and_says_so(tmp_path, copy_task, stopped, capsys):
    truncate(stopped / "checkpoint" / "trainable.safetensors")
    (stopped / "checkpoint" / "previous" / "state.json").write_text("{")
    out = resume(stopped, capsys)
    assert said(out, "no readable checkpoint", "starting the run again from step 0")
    assert outcome(stopped) == outcome(train(load_config(config_path(tmp_path, copy_task, "straight"))))


def test_two_checkpoints_at_most_the_older_one_under_previous(tmp_path):
    w = {"w": torch.nn.Parameter(torch.ones(3))}
    opt = torch.optim.AdamW(w.values(), lr=0.1)
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, w, opt, None, {"step": step})
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 3
    assert json.loads((tmp_path / "checkpoint" / "previous" / "state.json").read_text())["step"] == 2
    assert not (tmp_path / "checkpoint" / "previous" / "previous").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    shutil.rmtree(tmp_path / "checkpoint" / "previous")
    truncate(tmp_path / "checkpoint" / "trainable.safetensors")
    with pytest.raises(PeftlabError, match="no readable checkpoint"):
        checkpoint.load(tmp_path, w, opt)
