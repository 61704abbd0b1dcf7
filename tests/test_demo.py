"""The demo as a compare experiment (one process per method, the report, resume) on a tiny model."""

import json

import pytest
import yaml

from peftlab.cli import main
from peftlab.comparison import lr_search
from peftlab.comparison.compare import load_compare, run_configs
from peftlab.comparison.demo import DEMO_MODEL, DEMO_STEPS, run_demo, write_experiment


def test_demo_runs_three_methods_writes_the_report_and_resumes(tmp_path, capsys, monkeypatch):
    # The demo as `make demo` runs it: at its recorded lrs, no search (which is tested below and in
    # test_lr_search.py), here on a tiny model for 2 steps.
    monkeypatch.setattr("peftlab.comparison.demo.DEMO_STEPS", 2)
    monkeypatch.setattr("peftlab.comparison.demo.DEMO_MODEL", "tiny-llama")
    folder = run_demo(output_dir=tmp_path / "demo", steps=2, model="tiny-llama")
    assert (
        not (folder / "lr_search").exists() and "chosen by compare's lr search" in (folder / "compare.yaml").read_text()
    )
    assert folder == tmp_path / "demo"
    experiment = yaml.safe_load((folder / "compare.yaml").read_text())
    assert experiment["budget"] == {"steps": 2} and experiment["model"] == {"name": "tiny-llama"}
    board = json.loads((folder / "leaderboard.json").read_text())
    assert {r["label"] for r in board} == {"zero_shot", "full", "lora"}
    scores = [r["mean"] for r in board]
    assert scores == sorted(scores, reverse=True)  # best first
    assert {r["metric"] for r in board} == {"execution_accuracy"}
    assert "## sql_demo: test execution_accuracy" in (folder / "leaderboard.md").read_text()
    assert (folder / "leaderboard.csv").is_file() and (folder / "report.html").is_file()
    full = next(r for r in board if r["label"] == "full")
    assert full["trainable_pct"] == 100.0
    summaries = {r["label"]: json.loads((folder / r["runs"][0] / "summary.json").read_text()) for r in board}
    assert {label: s["steps"] for label, s in summaries.items()} == {"zero_shot": 0, "full": 2, "lora": 2}
    err = capsys.readouterr().err
    assert err.count("test example ") == 3 and err.count("reference") == 3  # three questions side by side
    assert "sql_demo: test execution_accuracy" in err  # and the leaderboard
    stamps = {r["label"]: (folder / r["runs"][0] / "summary.json").stat().st_mtime_ns for r in board}
    run_demo(output_dir=tmp_path / "demo", steps=2, model="tiny-llama")  # finished runs are reused
    assert capsys.readouterr().err.count("finished, skipped") == 3
    assert stamps == {r["label"]: (folder / r["runs"][0] / "summary.json").stat().st_mtime_ns for r in board}


def recorded_grids(path):
    """compare's plan for the written experiment: label -> the lrs it would try."""
    cc = load_compare(path)
    first = dict(reversed(run_configs(cc, str(path))))  # label -> its first run config
    entries = {m["label"]: m for m in cc.methods}
    search = lr_search.settings(cc.lr_search, cc.lr_factors, str(path))
    return lr_search.grids([(lb, entries[lb], raw) for lb, raw in first.items()], search, str(path))


def test_the_default_demo_trains_at_its_searched_lrs_and_lr_search_searches_again(tmp_path, capsys):
    path = write_experiment(tmp_path / "demo", DEMO_STEPS, DEMO_MODEL, lr_search=False)
    text = path.read_text()
    assert text.startswith(f"# peftlab compare {path}\n# lr: full 5e-05, lora 0.003, chosen by compare's lr search")
    assert "lora 0.003" in capsys.readouterr().err
    assert recorded_grids(path) == {"full": [5.0e-5], "lora": [3.0e-3]}  # one value each: no search
    searched = write_experiment(tmp_path / "searched", DEMO_STEPS, DEMO_MODEL, lr_search=True)
    grids = recorded_grids(searched)
    assert grids == {
        "full": pytest.approx([5.0e-5 / 3, 5.0e-5, 1.5e-4]),
        "lora": pytest.approx([1.0e-3 / 3, 1.0e-3, 3.0e-3]),
    }
    # another step count (or model) has no recorded choice: it is searched
    assert len(recorded_grids(write_experiment(tmp_path / "short", 10, DEMO_MODEL, lr_search=False))["lora"]) == 3


def test_the_command_line_passes_lr_search_to_the_demo(monkeypatch):
    seen = []
    monkeypatch.setattr("peftlab.comparison.demo.run_demo", lambda **kw: seen.append(kw))
    assert main(["demo", "--lr-search", "--output-dir", "x"]) == 0 and main(["demo", "--output-dir", "x"]) == 0
    assert [kw["lr_search"] for kw in seen] == [True, False]
