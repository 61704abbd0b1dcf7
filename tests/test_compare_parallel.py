"""A comparison's runs spread by the local launcher: `--parallel 2` gives the same runs and leaderboard
as one at a time, and two drivers of one experiment never train one run folder at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from peftlab.comparison.compare import compare
from peftlab.errors import PeftlabError
from peftlab.rundir.runio import read_jsonl
from tests.test_compare import experiment, summaries


def quality(scores: dict | None) -> dict | None:
    return None if scores is None else {k: v for k, v in scores.items() if k != "seconds"}  # zero-shot: no validation


def board(folder: Path) -> list[tuple]:
    rows = json.loads((folder / "leaderboard.json").read_text())
    return [(r["label"], r["mean"], r["verdict"]) for r in rows]


def test_parallel_two_gives_the_same_runs_and_leaderboard_as_one_at_a_time(tmp_path, copy_task, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # Three runs for two slots, so one waits for a slot; the zero-shot run is the cheap third.
    methods = [
        {"name": "lora", "rank": 4, "dropout": 0.0},
        {"name": "prompt_tuning", "num_virtual_tokens": 4},
        {"label": "zero_shot", "name": "none"},
    ]
    alone = compare(experiment(tmp_path, copy_task, methods=methods, seeds=[0], name="alone"))
    side = compare(experiment(tmp_path, copy_task, methods=methods, seeds=[0], name="side"), launcher={"parallel": 2})
    a, b = summaries(alone), summaries(side)
    assert sorted(a) == sorted(b) == ["lora-s0", "prompt_tuning-s0", "zero_shot-s0"]
    for name in a:
        for key in ("steps", "flops", "test_ids_sha256"):
            assert a[name][key] == b[name][key], (name, key)
        for key in ("test", "best_validation"):  # every metric; not the seconds it took
            assert quality(a[name][key]) == quality(b[name][key]), (name, key)
        assert a[name]["launch"]["concurrency"] == 1 and b[name]["launch"]["concurrency"] == 2
        assert b[name]["launch"]["launcher"] == "local" and (side / name / "train.log").is_file()
    assert board(alone) == board(side)
    assert "beside up to 1 other run" in (side / "leaderboard.md").read_text()
    assert "beside" not in (alone / "leaderboard.md").read_text()


def test_a_seconds_budget_is_refused_for_concurrent_cpu_runs(tmp_path, copy_task):

    path = experiment(tmp_path, copy_task, budget={"seconds": 5})
    with pytest.raises(PeftlabError, match="seconds budget with --parallel 2 on CPU"):
        compare(path, launcher={"parallel": 2})


def test_two_drivers_of_one_experiment_started_a_second_apart_train_each_run_once(tmp_path):
    exp = {
        "name": "twice",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-gpt-neo"},
        "task": {"name": "sql_demo", "max_new_tokens": 8},
        "budget": {"steps": 30},
        "evals": 1,
        "trackers": [],
        "train": {"batch_size": 4},
        "eval": {"batch_size": 8, "max_validation": 4, "max_test": 4},
        "methods": [{"name": "lora", "rank": 4}, {"name": "prompt_tuning", "num_virtual_tokens": 4}],
        # Two drivers sharing run folders is the point, not the lr search (test_lr_search.py): at one lr
        # each run is one folder, and the test takes a third of its time with the search.
        "lr_search": "off",
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "peftlab", "compare", str(path)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    folder = tmp_path / "runs" / "twice"
    for run in ["lora-s0", "prompt_tuning-s0"]:
        steps = [r["step"] for r in read_jsonl(folder / run / "metrics.jsonl") if "train_loss" in r]
        assert steps == list(range(1, 31)), run  # each step once: never two trainers in one folder
    # Each run was trained by one driver and skipped by the other, for one of the three reasons timing
    # allows: still being trained, finished while the other waited, or already finished when planned.
    # (Requiring "being trained" alone made this test fail when a loaded machine slowed one driver.)
    said = "".join(outputs)
    for run in ["lora-s0", "prompt_tuning-s0"]:
        reasons = [
            f"{run} skipped: being trained by",
            f"{run} skipped: finished by another",
            f"{run}: finished, skipped",
        ]
        assert sum(said.count(r) for r in reasons) == 1, (run, said)
