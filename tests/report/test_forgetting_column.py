"""The forgetting measure in the report: a leaderboard column (md, csv, json, HTML), a line in the
terminal, and a Pareto plot of quality against forgetting."""

from __future__ import annotations

import json

import pytest

from peftlab.console import console
from peftlab.report import explorer, write_report
from peftlab.report.aggregate import compare_runs
from peftlab.report.runs import load_runs
from peftlab.report.tables import print_tables
from peftlab.report.verdict import verdict
from tests.report.fakes import fake_run


def with_forgetting(run_dir, before: float, after: float, in_domain: bool | None = None) -> None:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    summary["forgetting"] = {
        "task": "dialogsum",
        "split": "test",
        "examples": 200,
        "loss_before": before,
        "loss_after": after,
        **({"in_domain": in_domain} if in_domain is not None else {}),
    }
    path.write_text(json.dumps(summary))


def folder(root, forgetting: bool = True, in_domain: bool | None = None):
    # full forgets (+0.30 and +0.50: mean +0.40); lora a little (+0.02); zero-shot nothing.
    for name, label, seed, scores, after in (
        ("full-s0", "full", 0, [1.0, 1.0, 1.0, 0.0], 2.3),
        ("full-s1", "full", 1, [1.0, 1.0, 1.0, 0.0], 2.5),
        ("lora-s0", "lora", 0, [1.0, 1.0, 0.0, 0.0], 2.02),
        ("zero-s0", "zero", 0, [0.0, 0.0, 0.0, 0.0], 2.0),
    ):
        run = fake_run(root, name, label=label, method="lora", seed=seed, example_scores=scores)
        if forgetting:
            with_forgetting(run, 2.0, after, in_domain)
    return root


def test_forgetting_is_a_column_a_terminal_line_and_a_pareto_axis(tmp_path):
    root = folder(tmp_path)
    html = write_report(root).read_text()
    rows = {r["label"]: r for r in json.loads((root / "leaderboard.json").read_text())}
    assert rows["full"]["forgetting_delta"] == pytest.approx(0.40)
    assert rows["lora"]["forgetting_delta"] == pytest.approx(0.02)
    assert rows["zero"]["forgetting_delta"] == 0
    assert "forgetting_delta" in (root / "leaderboard.csv").read_text().splitlines()[0]
    md = (root / "leaderboard.md").read_text()
    assert next(line for line in md.splitlines() if line.startswith("| label")).endswith("| forgetting |")
    assert next(line for line in md.splitlines() if line.startswith("| full")).endswith("| +0.400 |")
    assert "forgetting: language-modelling loss" in md
    assert '<th class="">forgetting</th>' in html and "+0.400" in html
    assert (root / "plots" / "sql_demo-pareto-forgetting_delta.png").is_file()
    assert "vs forgetting (LM loss after - before)" in html
    with console.capture() as captured:
        print_tables(compare_runs(load_runs(root)))
    assert "forgetting (LM loss after - before): full +0.400; lora +0.020; zero +0.000" in captured.get()


def test_without_forgetting_nothing_about_it_is_shown(tmp_path):
    root = folder(tmp_path, forgetting=False)
    html = write_report(root).read_text()
    md = (root / "leaderboard.md").read_text()
    assert "forgetting" not in md
    assert "forgetting</th>" not in html and "vs forgetting" not in html  # (the folder's name has the word)
    assert json.loads((root / "leaderboard.json").read_text())[0]["forgetting_delta"] is None


def test_forgetting_measured_on_the_trained_task_is_named_in_domain_loss_change(tmp_path):
    root = folder(tmp_path, in_domain=True)
    html = write_report(root).read_text()
    md = (root / "leaderboard.md").read_text()
    assert next(line for line in md.splitlines() if line.startswith("| label")).endswith("| in-domain loss change |")
    assert "| forgetting |" not in md
    assert '<th class="">in-domain loss change</th>' in html and "forgetting</th>" not in html
    assert "vs in-domain loss change (LM loss after - before)" in html
    with console.capture() as captured:
        print_tables(compare_runs(load_runs(root)))
    assert "in-domain loss change (LM loss after - before): full +0.400" in captured.get()
    # The verdict's cost line and the explorer's axis use the same name.
    (comp,) = compare_runs(load_runs(root))
    assert any(line.startswith("in-domain loss change: up to") for line in verdict(comp))
    assert "forgetting:" not in " ".join(verdict(comp))
    assert [a["name"] for a in explorer.data(comp, {})["axes"] if a["key"] == "forgetting_delta"] == [
        "in-domain loss change"
    ]
    # in_domain: false (and older runs without the key) keep the usual name
    html = write_report(folder(tmp_path / "other", in_domain=False)).read_text()
    assert '<th class="">forgetting</th>' in html and "in-domain" not in html
