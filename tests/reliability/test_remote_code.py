"""A model folder's own Python runs only when the config asks for it (model.trust_remote_code: true) AND
the command line allows it (--trust-remote-code). The key alone, one line of a shared YAML, is refused
before anything is loaded or written; the flag alone turns nothing on."""

from __future__ import annotations

import re

import pytest
import yaml

from peftlab.cli import main
from peftlab.comparison.launch import Job
from peftlab.config import ModelConfig
from peftlab.errors import PeftlabError
from peftlab.models import load_backbone
from tests.reliability.remote_model import remote_code_model

REFUSED = "model.trust_remote_code: true runs Python shipped in the model folder"


@pytest.fixture
def remote(tmp_path):
    """(model folder, marker file): the folder's code appends to the marker whenever it runs."""
    folder = tmp_path / ("remote_" + re.sub(r"\W", "_", tmp_path.name))  # a module name: unique per test
    folder.mkdir()
    marker = tmp_path / "code-ran.txt"
    return remote_code_model(folder, marker), marker


def run_config(tmp_path, copy_task, folder, trust: bool = True) -> str:
    cfg = {
        "name": "r",
        "output_dir": str(tmp_path / "runs"),
        "trackers": [],
        "model": {"name": str(folder), "trust_remote_code": trust},
        "method": {"name": "lora", "rank": 2},
        "task": copy_task,
        "train": {"max_steps": 1, "batch_size": 4},
        "eval": {"max_test": 1, "max_validation": 1, "validate_untrained": False},
    }
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_the_yaml_key_alone_is_refused_before_anything_is_loaded_or_written(tmp_path, copy_task, remote, capsys):
    folder, marker = remote
    cfg = run_config(tmp_path, copy_task, folder)
    assert main(["train", cfg]) == 2
    err = capsys.readouterr().err
    assert REFUSED in err and "pass --trust-remote-code to allow it" in err and "shared.yaml" in err
    assert not marker.exists() and not (tmp_path / "runs").exists()
    # `check` says now what train would refuse; with the flag it accepts the config (and runs nothing)
    assert main(["check", cfg]) == 2 and REFUSED in capsys.readouterr().err
    assert main(["check", cfg, "--trust-remote-code"]) == 0
    assert not marker.exists()


def test_the_flag_alone_turns_nothing_on(tmp_path, copy_task, remote, capsys):
    folder, marker = remote
    cfg = run_config(tmp_path, copy_task, folder, trust=False)
    assert main(["train", cfg, "--trust-remote-code"]) == 2
    err = capsys.readouterr().err
    assert "ships its own Python (modeling_marker.py)" in err and "model.trust_remote_code: true" in err
    assert not marker.exists()


def test_key_and_flag_together_train_and_every_command_of_the_run_needs_the_flag(tmp_path, copy_task, remote, capsys):
    folder, marker = remote
    assert main(["train", run_config(tmp_path, copy_task, folder), "--trust-remote-code"]) == 0
    assert "constructed" in marker.read_text()  # the folder's class built the model: as before the flag
    run = tmp_path / "runs" / "r"
    marker.unlink()
    refused = [
        ["eval", str(run)],
        ["generate", str(run), "honey"],
        ["merge", str(run), str(tmp_path / "merged")],
        ["attribute", str(run), "--example", "0"],
        ["data", str(run / "config.yaml"), "--out", str(tmp_path / "data")],
    ]
    for argv in refused:
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert REFUSED in capsys.readouterr().err, argv
    assert not marker.exists()
    assert not any(run.glob("eval_*")) and not (tmp_path / "merged").exists() and not (tmp_path / "data").exists()
    assert not (run / "attributions").exists()
    assert main(["eval", str(run), "--trust-remote-code"]) == 0
    assert (run / "eval_test.json").is_file() and "constructed" in marker.read_text()
    # resuming the run re-reads its config.yaml: the same rule
    assert main(["train", "--resume", str(run)]) == 2 and REFUSED in capsys.readouterr().err


def test_every_model_load_is_gated_for_python_callers_too(remote):
    from peftlab.models.loading import remote_code_allowed  # what the CLI's flag sets

    folder, marker = remote
    with pytest.raises(PeftlabError, match="pass --trust-remote-code"):
        load_backbone(ModelConfig(name=str(folder), trust_remote_code=True))
    assert not marker.exists()
    with remote_code_allowed():
        bb = load_backbone(ModelConfig(name=str(folder), trust_remote_code=True))
    assert type(bb.model).__name__ == "MarkerForCausalLM" and marker.exists()


def test_compare_refuses_the_key_alone_before_writing_and_passes_the_flag_to_its_runs(
    tmp_path, copy_task, remote, capsys
):
    folder, marker = remote
    exp = {
        "name": "cmp",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": str(folder), "trust_remote_code": True},
        "task": copy_task,
        "budget": {"steps": 1},
        "trackers": [],
        "eval": {"batch_size": 4, "max_test": 1, "max_validation": 1},
        "lr_search": "off",
        "methods": [{"label": "zero_shot", "name": "none"}],
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(exp))
    assert main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert REFUSED in err and "compare.yaml" in err
    assert not (tmp_path / "runs").exists() and not marker.exists()
    # With the flag, the run (a separate `peftlab train` process) gets it too and loads the model.
    assert main(["compare", str(path), "--trust-remote-code"]) == 0
    assert (tmp_path / "runs" / "cmp" / "zero_shot-s0" / "summary.json").is_file()
    assert "constructed" in marker.read_text()


def test_a_job_carries_the_flag_only_when_given(tmp_path):
    plain = Job("r", tmp_path / "r.yaml", tmp_path / "r")
    assert "--trust-remote-code" not in plain.command()
    trusted = Job("r", tmp_path / "r.yaml", tmp_path / "r", trust_remote_code=True)
    assert trusted.command()[-1] == "--trust-remote-code"


def test_transformers_refusing_custom_code_is_explained_not_called_a_missing_model(remote, monkeypatch):
    """A hub model with custom code is refused by transformers itself (trust_remote_code off): the message
    says why and how to allow it, rather than "cannot be reached"."""
    from peftlab.models import loading

    folder, marker = remote
    monkeypatch.setattr(loading, "refuse_unasked_remote_code", lambda folder, cfg: None)  # as for a hub id
    with pytest.raises(PeftlabError, match="ships its own Python.*model.trust_remote_code: true.*--trust-remote-code"):
        load_backbone(ModelConfig(name=str(folder)))
    assert not marker.exists()


def test_train_called_from_python_refuses_before_making_the_run_folder(tmp_path, copy_task, remote):
    from peftlab.config import load_config
    from peftlab.training.train import train

    folder, marker = remote
    cfg = load_config(run_config(tmp_path, copy_task, folder))
    with pytest.raises(PeftlabError, match="pass --trust-remote-code"):
        train(cfg)
    assert not marker.exists() and not (tmp_path / "runs").exists()
