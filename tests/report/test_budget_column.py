"""The leaderboard shows what each label spent of its budget (summary.json's budget.spent / amount)."""

from __future__ import annotations

import json

import pytest

from peftlab.console import console
from peftlab.report import write_report
from peftlab.report.aggregate import compare_runs
from peftlab.report.runs import load_runs
from peftlab.report.tables import print_tables
from tests.report.fakes import fake_run


def with_budget(run_dir, budget: dict | None) -> None:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    if budget is None:
        summary.pop("budget", None)
    else:
        summary["budget"] = budget
    path.write_text(json.dumps(summary))


def folder(root):
    # lora: two seeds at 99% and 101% of 1e12 FLOPs (mean 100%); full: 97.5%; an older run: no spent.
    for name, label, seed, spent in (
        ("lora-s0", "lora", 0, 0.99e12),
        ("lora-s1", "lora", 1, 1.01e12),
        ("full-s0", "full", 0, 0.975e12),
        ("old-s0", "old", 0, None),
    ):
        run = fake_run(root, name, label=label, method="lora", seed=seed, example_scores=[1.0, 0.0, 1.0, 0.0])
        with_budget(run, {"kind": "flops", "amount": 1e12, **({"spent": spent} if spent else {})})
    return root


def test_leaderboard_shows_spent_over_budget(tmp_path, capsys):
    root = folder(tmp_path)
    html = write_report(root).read_text()
    rows = {r["label"]: r for r in json.loads((root / "leaderboard.json").read_text())}
    assert rows["lora"]["budget_used"] == pytest.approx(1.0)
    assert rows["full"]["budget_used"] == pytest.approx(0.975)
    assert rows["old"]["budget_used"] is None
    assert "budget_used" in (root / "leaderboard.csv").read_text().splitlines()[0]
    md = (root / "leaderboard.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| label"))
    assert "budget" in header
    full = next(line for line in md.splitlines() if line.startswith("| full"))
    assert "97.5%" in full
    assert "100.0%" in next(line for line in md.splitlines() if line.startswith("| lora"))
    assert "97.5%" in html and "100.0%" in html
    with console.capture() as captured:  # the terminal table: the range, in its title
        print_tables(compare_runs(load_runs(root)))
    assert "budget spent 97.5-100.0%" in " ".join(captured.get().split())


def test_one_seed_terminal_table_gives_the_spent_range_in_its_title_too(tmp_path):
    for name, spent in (("a", 0.99e12), ("b", 1.004e12)):
        run = fake_run(tmp_path, name, label=name, method="lora", seed=0, example_scores=[1.0, 0.0])
        with_budget(run, {"kind": "flops", "amount": 1e12, "spent": spent})
    with console.capture() as captured:
        print_tables(compare_runs(load_runs(tmp_path)))
    text = " ".join(captured.get().split())
    assert "one seed, budget spent 99.0-100.4%" in text


def test_the_terminal_gives_each_labels_interval_of_its_distance_to_the_best(tmp_path):
    for name, scores in (("a", [1.0, 1.0, 1.0, 0.0]), ("b", [1.0, 0.0, 1.0, 0.0])):
        fake_run(tmp_path, name, label=name, method="lora", seed=0, example_scores=scores)
    (comp,) = compare_runs(load_runs(tmp_path))
    b = next(e for e in comp.entries if e.shown_label == "b")
    with console.capture() as captured:
        print_tables([comp])
    lines = captured.get().splitlines()
    assert f"95% interval of Δ: b [{b.tie.ci[0]:.3f}, {b.tie.ci[1]:.3f}]" in lines
    assert b.tie.ci[0] <= 0.25 <= b.tie.ci[1]  # the difference itself (1 of 4 examples) lies inside it
    assert max(len(line) for line in lines) <= 100


def test_the_time_split_sums_training_evaluation_and_the_rest_over_runs(tmp_path):
    from peftlab.report.costs import time_split

    for name, (train_s, eval_s, wall_s) in (("a", (50, 20, 100)), ("b", (70, 40, 100))):
        run = fake_run(tmp_path, name, label=name, method="lora", seed=0, example_scores=[1.0, 0.0])
        summary = json.loads((run / "summary.json").read_text())
        summary.update(train_seconds=train_s, eval_seconds=eval_s, wall_seconds=wall_s)
        (run / "summary.json").write_text(json.dumps(summary))
    (comp,) = compare_runs(load_runs(tmp_path))
    assert time_split(comp) == (
        "Time, summed over 2 runs (200 s): training 120 s (60%), evaluation 60 s (30%), "
        "other 20 s (10%) (process start, model loading, checkpoints)"
    )
    write_report(tmp_path)
    assert "training 120 s (60%)" in (tmp_path / "leaderboard.md").read_text()
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    del summary["wall_seconds"]  # a run from before the record: no split rather than a wrong one
    (tmp_path / "a" / "summary.json").write_text(json.dumps(summary))
    assert time_split(compare_runs(load_runs(tmp_path))[0]) is None


def test_the_time_split_names_forgetting_and_inference_cost_where_runs_measured_them(tmp_path):
    from peftlab.report.costs import time_split

    run = fake_run(tmp_path, "a", label="a", method="lora", seed=0, example_scores=[1.0, 0.0])
    summary = json.loads((run / "summary.json").read_text())
    summary.update(train_seconds=40, eval_seconds=20, wall_seconds=100)
    summary["forgetting"] = {
        "task": "t",
        "split": "test",
        "examples": 4,
        "loss_before": 2.0,
        "loss_after": 2.1,
        "seconds": 15,
    }
    summary["inference"] = {"max_new_tokens": 8, "unmerged": {"batch_1": {"ms_per_token": 9.0}}, "seconds": 10}
    (run / "summary.json").write_text(json.dumps(summary))
    assert time_split(compare_runs(load_runs(tmp_path))[0]) == (
        "Time, summed over 1 runs (100 s): training 40 s (40%), evaluation 20 s (20%), forgetting 15 s (15%), "
        "inference cost 10 s (10%), other 15 s (15%) (process start, model loading, checkpoints)"
    )
