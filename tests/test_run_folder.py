"""The run folder's layout (rundir/folder.py) is what the trainer writes: a finished run and a run
stopped mid-way leave exactly the files RunDir names, so a reader that goes through RunDir finds them."""

from __future__ import annotations

import pytest

from peftlab.rundir.folder import RunDir, pending
from peftlab.rundir.runio import finished_with_config
from peftlab.training.train import train
from tests.test_train import make_config


def names(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_a_finished_run_leaves_the_files_rundir_names_and_no_other(tmp_path, copy_task):
    run_dir = train(make_config(tmp_path, copy_task))
    files = RunDir(run_dir)
    named = (files.config, files.metrics, files.summary, files.predictions, files.adapter, files.lock)
    assert names(run_dir) == {p.name for p in named}
    assert files.finished and files.adapter.is_dir()
    assert finished_with_config(run_dir, lambda text: "tiny-llama" in text) == (True, True)


def test_a_run_stopped_at_a_rung_keeps_its_checkpoint_and_best_weights_where_rundir_says(tmp_path, copy_task):
    cfg = make_config(tmp_path, copy_task, stop_at=0.5, checkpoint=True)
    files = RunDir(train(cfg))
    assert not files.finished  # stopped, not finished: no summary
    assert files.checkpoint.is_dir() and files.best.is_file()
    assert files.rungs.is_file() and files.validation_predictions.is_file()
    assert not any(n.endswith(".tmp") for n in names(files.root))  # every write was renamed into place


def test_a_pending_write_sits_hidden_beside_its_file(tmp_path):
    files = RunDir(str(tmp_path))  # a CLI argument's str works as well as a Path
    assert files.root == tmp_path
    assert pending(files.best) == tmp_path / ".best.safetensors.tmp"
    assert pending(files.checkpoint).parent == tmp_path and pending(files.checkpoint).name.startswith(".")
    with pytest.raises(AttributeError):
        files.root = tmp_path / "elsewhere"  # frozen: a run's folder does not move under it
