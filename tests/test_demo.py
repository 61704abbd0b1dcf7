"""The demo as a compare experiment (one process per method, the report, resume) on a tiny model."""

import json

import yaml

from peftlab.demo import run_demo


def test_demo_runs_three_methods_writes_the_report_and_resumes(tmp_path, capsys):
    folder = run_demo(output_dir=tmp_path / "demo", steps=2, model="tiny-llama")
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
