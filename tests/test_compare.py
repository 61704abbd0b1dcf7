"""`peftlab compare`: every method x seed at one budget, resumable, with the report at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from peftlab.comparison.compare import compare, load_compare, run_configs
from peftlab.errors import PeftlabError
from peftlab.rundir.runio import read_jsonl
from peftlab.rundir.runlock import RunLock, RunLocked


def experiment(tmp_path: Path, copy_task: dict, **over) -> Path:
    exp = {
        "name": "cmp",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "task": copy_task,
        "budget": {"steps": 6},
        "evals": 2,
        "seeds": [0, 1],
        "trackers": [],
        "train": {"batch_size": 4, "lr": 1e-2},
        "eval": {"batch_size": 4},
        # Every method at its one lr: these tests are about compare, not the lr search (test_lr_search.py
        # drops this key to get compare's default search); a search would train each method 1.7x.
        "lr_search": "off",
        "methods": [
            {"label": "zero_shot", "name": "none"},
            {"name": "lora", "rank": 4, "dropout": 0.0},
            {"name": "prompt_tuning", "num_virtual_tokens": 4, "train": {"lr": 0.1}},
        ],
        **over,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def summaries(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/summary.json")}


def test_compare_runs_each_method_and_seed_at_one_budget_and_writes_the_report(tmp_path, copy_task):
    folder = compare(experiment(tmp_path, copy_task))
    runs = summaries(folder)
    assert sorted(runs) == ["lora-s0", "lora-s1", "prompt_tuning-s0", "prompt_tuning-s1", "zero_shot-s0"]
    for name, s in runs.items():
        trains = not name.startswith("zero_shot")
        assert s["steps"] == (6 if trains else 0) and (s["flops"] > 0) == trains
        assert s["label"] == name.rsplit("-s", 1)[0]
    curve = [r for r in read_jsonl(folder / "lora-s0" / "metrics.jsonl") if "validation" in r]
    assert [r["step"] for r in curve] == [0, 3, 6]  # untrained, then evals: 2 = half way and the end
    assert curve[0]["flops"] == 0 and all(r["flops"] > 0 for r in curve[1:])
    assert runs["lora-s0"]["test"] != runs["lora-s1"]["test"] or runs["lora-s0"]["seed"] != runs["lora-s1"]["seed"]
    assert (folder / "report.html").is_file() and (folder / "leaderboard.md").is_file()
    board = json.loads((folder / "leaderboard.json").read_text())
    assert {row["label"] for row in (board["rows"] if isinstance(board, dict) else board)} == {
        "zero_shot",
        "lora",
        "prompt_tuning",
    }


def test_flop_budget_buys_more_steps_for_cheaper_methods(tmp_path, copy_task):
    cheap_and_dear = [{"name": "lora", "rank": 4, "dropout": 0.0}, {"name": "full", "train": {"lr": 1e-3}}]
    path = experiment(tmp_path, copy_task, seeds=[0], methods=cheap_and_dear, budget={"flops": 2.0e9}, evals=1)
    runs = summaries(compare(path))
    for s in runs.values():
        # Stops at the step boundary nearest the budget: at most half a step either side of it
        # (0.6: this task's steps differ by a little padding).
        assert abs(s["flops"] - 2.0e9) <= 0.6 * s["flops_per_step"] and s["budget"]["spent"] == s["flops"]
    assert runs["lora-s0"]["steps"] > runs["full-s0"]["steps"]  # no weight gradients for frozen weights


def test_experiment_errors_name_the_problem(tmp_path, copy_task):
    dup = experiment(tmp_path, copy_task, methods=[{"name": "lora"}, {"name": "lora", "rank": 4}])
    with pytest.raises(PeftlabError, match=r"methods\[1\]: label 'lora' must be unique"):
        run_configs(load_compare(dup), "exp.yaml")
    two = experiment(tmp_path, copy_task, budget={"steps": 5, "flops": 1e9})
    with pytest.raises(PeftlabError, match="budget.*exactly one of steps, epochs"):
        load_compare(two)
    typo = experiment(tmp_path, copy_task, seeds=[0], methods=[{"name": "lora", "rnak": 4}])
    with pytest.raises(PeftlabError, match="rnak"):
        compare(typo)
    # a method that does not fit the model fails the experiment before its first run, naming the entry
    misfit = experiment(tmp_path, copy_task, seeds=[0], methods=[{"name": "lora"}, {"name": "bitfit"}])
    with pytest.raises(
        PeftlabError, match=r"method bitfit: .*method bitfit: the model has no bias terms \(tiny-llama\)"
    ):
        compare(misfit)
    assert not list((tmp_path / "runs").rglob("config.yaml"))  # no run was started


def wait_until_free(run_dir: Path, timeout: float = 120) -> None:
    """Until no process holds the run folder's lock (runlock.py)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with RunLock(run_dir):
                return
        except RunLocked:
            assert time.monotonic() < deadline, f"{run_dir} still locked"
            time.sleep(0.1)


def test_killed_compare_resumes_without_recomputing_finished_runs(tmp_path, copy_task):
    path = experiment(
        tmp_path,
        copy_task,
        seeds=[0],
        budget={"steps": 300},
        evals=30,
        methods=[
            {
                "name": "lora",
                "rank": 4,
                "dropout": 0.0,
                "train": {"max_steps": 4, "evals": 1},
                "override": "a short first run, so that the second starts soon",
            },
            {"name": "prompt_tuning", "num_virtual_tokens": 4, "train": {"lr": 0.1}},
        ],
        eval={"batch_size": 4, "max_validation": 1, "max_test": 1},
    )
    folder = tmp_path / "runs" / "cmp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "peftlab", "compare", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = folder / "prompt_tuning-s0" / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while not ckpt.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()  # the driver only: its running child gets SIGTERM from the kernel and checkpoints
    proc.wait()
    wait_until_free(folder / "prompt_tuning-s0")
    assert ckpt.is_file(), "the second run never wrote a checkpoint before the compare ended"
    assert not (folder / "prompt_tuning-s0" / "summary.json").exists()
    first = folder / "lora-s0" / "summary.json"
    finished_at = first.stat().st_mtime_ns
    checkpoint_step = json.loads(ckpt.read_text())["step"]

    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert first.stat().st_mtime_ns == finished_at  # the finished run was not recomputed
    assert f"resuming from the checkpoint at step {checkpoint_step}" in out.stdout + out.stderr
    s = json.loads((folder / "prompt_tuning-s0" / "summary.json").read_text())
    assert s["steps"] == 300
    steps = [r["step"] for r in read_jsonl(folder / "prompt_tuning-s0" / "metrics.jsonl") if "train_loss" in r]
    assert steps == list(range(1, 301))  # no step logged twice, none missing
    assert not (folder / "prompt_tuning-s0" / "checkpoint").exists()
