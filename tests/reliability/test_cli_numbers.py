"""Numbers and files that would train or score nonsense are refused before anything runs: out-of-range
command-line numbers (argparse, exit 2, naming the flag and what is allowed), seeds numpy refuses,
non-finite config numbers, data files with no rows; and `eval` never replaces an earlier result silently."""

from __future__ import annotations

import json

import pytest
import yaml

from peftlab.cli import main
from peftlab.errors import PeftlabError
from peftlab.evaluation.evaluate import eval_run


def exit_code(argv: list[str]) -> int:
    """main's return code, or argparse's exit code (it exits rather than returns on a bad flag)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize(
    ("argv", "flag", "allowed"),
    [
        (["eval", "RUN", "--limit", "0"], "--limit", ">= 1"),
        (["eval", "RUN", "--limit", "-1"], "--limit", ">= 1"),
        (["eval", "RUN", "--limit", "ten"], "--limit", ">= 1"),
        (["eval", "RUN", "--num-beams", "0"], "--num-beams", "from 1 to 64"),
        (["eval", "RUN", "--num-beams", "1000"], "--num-beams", "from 1 to 64"),
        (["generate", "RUN", "hi", "--num-beams", "0"], "--num-beams", "from 1 to 64"),
        (["generate", "RUN", "hi", "--max-new-tokens", "0"], "--max-new-tokens", "from 1 to 4096"),
        (["generate", "RUN", "hi", "--max-new-tokens", "100000"], "--max-new-tokens", "from 1 to 4096"),
        (["demo", "--steps", "0"], "--steps", ">= 1"),
        (["attribute", "RUN", "--example", "-1"], "--example", ">= 0"),
        (["attribute", "RUN", "--example", "0", "--steps", "0"], "--steps", "from 1 to 1024"),
        (["attribute", "RUN", "--example", "0", "--steps", "450213119"], "--steps", "from 1 to 1024"),
        (["attribute", "RUN", "--example", "0", "--batch-size", "-2"], "--batch-size", ">= 1"),
        (["data", "copy", "--examples", "-1"], "--examples", ">= 0"),
        (["report", "DIR", "--examples", "0,-1"], "--examples", ">= 0"),
    ],
)
def test_out_of_range_flags_exit_2_naming_the_flag_and_the_range(argv, flag, allowed, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and allowed in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def write_config(tmp_path, copy_task, **top) -> str:
    cfg = {
        "name": "r",
        "output_dir": str(tmp_path / "runs"),
        "trackers": [],
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 2},
        "task": copy_task,
        "train": {"max_steps": 1, "batch_size": 4},
        "eval": {"max_test": 2, "max_validation": 1, "validate_untrained": False},
        **top,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_a_seed_numpy_refuses_is_refused_at_check(seed, tmp_path, copy_task, capsys):
    assert main(["check", write_config(tmp_path, copy_task, seed=seed)]) == 2
    err = capsys.readouterr().err
    assert "seed:" in err and ("4294967295" in err or ">= 0" in err or "greater than or equal to 0" in err)
    assert not (tmp_path / "runs").exists()


def test_the_largest_seed_trains(tmp_path, copy_task):
    assert main(["train", write_config(tmp_path, copy_task, seed=2**32 - 1)]) == 0
    assert json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())["seed"] == 2**32 - 1


@pytest.mark.parametrize("key", ["train.lr", "train.max_flops", "train.weight_decay", "train.warmup_ratio"])
@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_non_finite_numbers_are_refused_naming_the_key(key, value, tmp_path, copy_task, capsys):
    argv = ["check", write_config(tmp_path, copy_task), "--set", f"{key}={value}"]
    if key == "train.max_flops":
        argv += ["--set", "train.max_steps=null"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{key}:" in err and "Traceback" not in err


@pytest.mark.parametrize("split", ["train", "validation", "test"])
@pytest.mark.parametrize("content", ["", "\n\n", "  \n"])
def test_an_empty_data_file_is_an_error_at_check_naming_the_file(split, content, tmp_path, copy_task, capsys):
    empty = tmp_path / f"empty-{split}.jsonl"
    empty.write_text(content)
    copy_task["data_files"][split] = str(empty)
    assert main(["check", write_config(tmp_path, copy_task)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and f"the {split} data" in err and "no rows" in err
    assert not (tmp_path / "runs").exists()


def test_an_empty_csv_with_only_a_header_is_an_error_too(tmp_path, copy_task, capsys):
    header = tmp_path / "train.csv"
    header.write_text("uid,word,answer\n")
    copy_task["data_files"]["train"] = str(header)
    assert main(["check", write_config(tmp_path, copy_task)]) == 2
    assert f"{header}: the train data" in capsys.readouterr().err


@pytest.fixture
def trained(tmp_path, copy_task):
    assert main(["train", write_config(tmp_path, copy_task)]) == 0
    return tmp_path / "runs" / "r"


def test_eval_never_replaces_an_earlier_result_without_overwrite(trained, capsys):
    assert main(["eval", str(trained), "--limit", "1"]) == 0
    first = {p.name: p.read_bytes() for p in trained.glob("*_test.*")}
    assert sorted(first) == ["eval_test.json", "predictions_test.csv"]
    assert json.loads(first["eval_test.json"])["examples"] == 1
    capsys.readouterr()
    assert main(["eval", str(trained)]) == 2
    err = capsys.readouterr().err
    assert "eval_test.json" in err and "predictions_test.csv" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in trained.glob("*_test.*")} == first  # kept, byte for byte
    # another beam width is another file name: no clash, the first result stays
    assert main(["eval", str(trained), "--num-beams", "2"]) == 0
    assert (trained / "eval_test_beam2.json").is_file() and (trained / "eval_test.json").read_bytes() == first[
        "eval_test.json"
    ]
    assert main(["eval", str(trained), "--overwrite"]) == 0
    assert json.loads((trained / "eval_test.json").read_text())["examples"] == 2


def test_eval_from_python_refuses_nonsense_numbers_before_loading(trained):
    with pytest.raises(PeftlabError, match="--limit: must be a whole number >= 1"):
        eval_run(trained, limit_n=0)
    with pytest.raises(PeftlabError, match="--num-beams: must be a whole number >= 1"):
        eval_run(trained, num_beams=0)
    assert not any(trained.glob("eval_*"))
