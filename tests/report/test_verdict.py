"""The answer in words (report/verdict.py): read off the Pareto fronts, in leaderboard.md, the
terminal and report.html."""

from __future__ import annotations

from peftlab.console import console
from peftlab.report import write_report
from peftlab.report.aggregate import compare_runs
from peftlab.report.runs import load_runs
from peftlab.report.tables import print_tables
from peftlab.report.verdict import verdict
from tests.report.fakes import fake_run

# label -> (trainable parameters, peak memory, per-seed example scores)
LABELS = {
    "zero": (0, 3_000_000_000, [[0.0, 0.0, 0.0, 0.0]]),
    "lora": (1_000, 3_500_000_000, [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]),
    "prompt": (5_000, 3_200_000_000, [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),  # dominated by lora
    "full": (100_000, 9_000_000_000, [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]),
}


def folder(root):
    for label, (trainable, memory, seeds) in LABELS.items():
        for seed, scores in enumerate(seeds):
            fake_run(
                root,
                f"{label}-s{seed}",
                label=label,
                method="none" if label == "zero" else "lora",
                seed=seed,
                example_scores=scores,
                trainable=trainable,
                peak_memory=memory,
            )
    return root


def test_each_cost_gets_its_frontier_cheapest_first(tmp_path):
    (comp,) = compare_runs(load_runs(folder(tmp_path)))
    lines = verdict(comp)
    # The first line names the top group (report/top_group.py), not one winner: lora's 0.625 over two
    # seeds of 4 examples cannot be told apart from full's 1.000.
    assert lines[0] == "Top group for test execution_accuracy (not separable from the best): full 1.000, lora 0.625"
    trainable = next(line for line in lines if line.startswith("trainable parameters:"))
    # zero (0) < lora (1k, 0.625) < full (100k, 1.0); prompt is dearer than lora and worse: not named.
    assert [step.split(": ")[-1].split(" ")[0] for step in trainable.split("; ")] == ["zero", "lora", "full"]
    # Tie-aware: full is the best, and lora, cheaper, ties it: named with it.
    assert "prompt" not in trainable and trainable.endswith("full 1.000 (best, tied by cheaper lora)")
    assert "lora 0.625 (top group" in trainable
    memory = next(line for line in lines if line.startswith("training memory:"))
    # By memory prompt (3.2 GB) is cheaper than lora (3.5 GB) and better than zero: on this frontier.
    assert [step.split(": ")[-1].split(" ")[0] for step in memory.split("; ")] == ["zero", "prompt", "lora", "full"]


def test_the_verdict_opens_the_report_and_closes_the_terminal_table(tmp_path):
    root = folder(tmp_path)
    html = write_report(root).read_text()
    md = (root / "leaderboard.md").read_text()
    (comp,) = compare_runs(load_runs(root))
    first = verdict(comp)[0]
    assert md.index(f"- {first}") < md.index("| label")  # before the table
    assert html.index('<ul class="verdict">') < html.index('<table class="board">')
    with console.capture() as captured:
        print_tables([comp])
    out = captured.get()
    assert first in out and "trainable parameters: up to 0: zero 0.000" in out


def test_the_header_gives_how_many_seeds_then_which(tmp_path):
    from peftlab.report.meta import facts

    (comp,) = compare_runs(load_runs(folder(tmp_path)))
    assert dict(facts(comp))["seeds"] == "2 (seeds 0, 1)"
    one = tmp_path / "one"
    fake_run(one, "a-s3", label="a", method="lora", seed=3, example_scores=[1.0, 0.0])
    fake_run(one, "b-s3", label="b", method="lora", seed=3, example_scores=[0.0, 0.0])
    (comp,) = compare_runs(load_runs(one))
    assert dict(facts(comp))["seeds"] == "1 (seed 3)"  # not "3", which would read as three seeds
