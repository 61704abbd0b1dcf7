"""The demo's machinery (one process per method, leaderboard, resume) on a tiny model."""

import json

from peftlab.demo import run_demo


def test_demo_runs_three_methods_writes_leaderboard_and_resumes(tmp_path, capsys):
    rows = run_demo(output_dir=tmp_path / "demo", steps=2, model="tiny-llama")
    assert {r["method"] for r in rows} == {"none", "full", "lora"}
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)  # best first
    board = json.loads((tmp_path / "demo" / "leaderboard.json").read_text())
    assert board == rows
    assert "| method | execution_accuracy |" in (tmp_path / "demo" / "leaderboard.md").read_text()
    full = next(r for r in rows if r["method"] == "full")
    assert full["trainable_pct"] == 100.0
    stamps = {r["run"]: (tmp_path / "demo" / r["run"] / "summary.json").stat().st_mtime_ns for r in rows}
    capsys.readouterr()
    run_demo(output_dir=tmp_path / "demo", steps=2, model="tiny-llama")  # finished runs are reused
    assert "not rerun" in capsys.readouterr().err
    assert stamps == {r["run"]: (tmp_path / "demo" / r["run"] / "summary.json").stat().st_mtime_ns for r in rows}
