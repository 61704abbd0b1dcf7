"""A finished run whose summary.json is unreadable is not skipped as finished: compare says which file and
what is wrong, how to rebuild it, exits 2, and keeps every file; removing the file as told retrains it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from peftlab.cli import main


def experiment(tmp_path: Path, copy_task: dict) -> Path:
    exp = {
        "name": "cmp",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "task": copy_task,
        "budget": {"steps": 1},
        "trackers": [],
        "lr_search": "off",
        "eval": {"batch_size": 4},
        "methods": [{"label": "zs", "name": "none"}],
    }
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_corrupt_summary_is_reported_with_the_fix_and_nothing_is_lost(tmp_path, copy_task, capsys):
    path = experiment(tmp_path, copy_task)
    assert main(["compare", str(path)]) == 0
    summary = tmp_path / "runs" / "cmp" / "zs-s0" / "summary.json"
    good = summary.read_text()
    corruptions = {
        good[: len(good) // 2]: "not valid JSON",  # cut short
        "[1, 2]": "expected a JSON object",
        json.dumps({"steps": 0}): "missing field(s) run",
    }
    for text, why in corruptions.items():
        summary.write_text(text)
        before = snapshot(tmp_path / "runs")
        capsys.readouterr()
        assert main(["compare", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{summary}: {why}" in err and "cmp.yaml" in err, err
        assert f"rm {shlex.quote(str(summary))}" in err and "--overwrite" in err
        assert snapshot(tmp_path / "runs") == before  # nothing rewritten, nothing removed

    # Doing what the message says rebuilds the run.
    summary.unlink()
    assert main(["compare", str(path)]) == 0
    assert json.loads(summary.read_text())["run"] == "zs-s0"


def test_overwrite_rebuilds_a_corrupt_summary(tmp_path, copy_task):
    path = experiment(tmp_path, copy_task)
    assert main(["compare", str(path)]) == 0
    summary = tmp_path / "runs" / "cmp" / "zs-s0" / "summary.json"
    summary.write_text("{")
    assert main(["compare", str(path), "--overwrite"]) == 0
    assert json.loads(summary.read_text())["run"] == "zs-s0"
