"""`peftlab compare` checks its numbers and lists before anything trains or is written, and a problem in
a generated run config is reported against the user's experiment file and its own keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from peftlab.cli import main


def experiment(tmp_path: Path, copy_task: dict, **over) -> Path:
    exp = {
        "name": "cmp",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "task": copy_task,
        "budget": {"steps": 2},
        "evals": 1,
        "seeds": [0],
        "trackers": [],
        "train": {"batch_size": 4, "lr": 1e-2},
        "eval": {"batch_size": 4},
        "lr_search": "off",
        "methods": [{"name": "lora", "rank": 2}],
        **over,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def refused(tmp_path: Path, path: Path, capsys) -> str:
    """compare exits 2 with nothing written under output_dir; returns the message."""
    assert main(["compare", str(path)]) == 2
    assert not (tmp_path / "runs").exists()  # refused before any folder, config or run was made
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "seeds, why",
    [
        ([0, 0], r"\[0\] given twice"),
        ([-1], r"\[-1\] out of range"),
        ([2**70], r"out of range"),
        ([2**32], r"out of range"),
        ([True], r"valid integer"),
    ],
)
def test_bad_seeds_are_refused_before_training(tmp_path, copy_task, capsys, seeds, why):
    err = refused(tmp_path, experiment(tmp_path, copy_task, seeds=seeds), capsys)
    assert "exp.yaml" in err and "seeds" in err and re.search(why, err), err
    assert "valid integer" in err or "distinct integers 0..4294967295" in err


def test_largest_seed_is_accepted(tmp_path, copy_task):
    from peftlab.comparison.compare import load_compare

    assert load_compare(experiment(tmp_path, copy_task, seeds=[0, 2**32 - 1])).seeds == [0, 2**32 - 1]


def test_negative_example_index_is_refused(tmp_path, copy_task, capsys):
    err = refused(tmp_path, experiment(tmp_path, copy_task, examples=[-1, 0]), capsys)
    assert "exp.yaml" in err and "examples" in err and "from 0" in err


def test_example_beyond_the_test_split_is_refused_before_training(tmp_path, copy_task, capsys):
    # The copy task has 2 test examples: indices 0 and 1.
    err = refused(tmp_path, experiment(tmp_path, copy_task, examples=[0, 1, 1000000000]), capsys)
    assert "exp.yaml: examples: [1000000000]" in err and "indices 0..1" in err


def test_example_beyond_max_test_is_refused(tmp_path, copy_task, capsys):
    path = experiment(tmp_path, copy_task, examples=[1], eval={"batch_size": 4, "max_test": 1})
    err = refused(tmp_path, path, capsys)
    assert "examples: [1]" in err and "indices 0..0" in err


@pytest.mark.parametrize(
    "over, key, value",
    [
        ({"budget": {"steps": -3}}, "budget.steps", "-3"),
        ({"budget": {"steps": 0.5}}, "budget.steps", "0.5"),
        ({"budget": {"flops": -1}}, "budget.flops", "-1"),
        ({"train": {"batch_size": 0}}, "train.batch_size", "0"),
        ({"methods": [{"name": "lora", "train": {"lr": -1}}]}, "methods[0].train.lr", "-1"),
        ({"methods": [{"name": "lora", "rank": -2}]}, "methods[0].rank", "-2"),
        ({"methods": [{"name": "lora", "rnak": 2}]}, "methods[0].rnak", "did you mean 'rank'"),
    ],
)
def test_run_config_errors_name_the_experiment_file_and_key(tmp_path, copy_task, capsys, over, key, value):
    err = refused(tmp_path, experiment(tmp_path, copy_task, **over), capsys)
    assert "exp.yaml: method lora: " in err and f"{key}: " in err and value in err, err
    assert "configs/" not in err and "max_steps" not in err and "<defaults>" not in err


def test_run_config_errors_name_the_key_with_the_lr_search_on(tmp_path, copy_task, capsys):
    err = refused(tmp_path, experiment(tmp_path, copy_task, budget={"steps": 0}, lr_search="on"), capsys)
    assert "exp.yaml: method lora: budget.steps: " in err and "<defaults>" not in err


def test_a_good_experiment_still_runs(tmp_path, copy_task):
    path = experiment(tmp_path, copy_task, seeds=[3], examples=[1], methods=[{"label": "zs", "name": "none"}])
    assert main(["compare", str(path)]) == 0
    summary = json.loads((tmp_path / "runs" / "cmp" / "zs-s3" / "summary.json").read_text())
    assert summary["seed"] == 3
