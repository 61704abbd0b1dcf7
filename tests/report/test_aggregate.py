"""Leaderboard numbers against hand computations; ties by the paired bootstrap over seeds and
examples (more hand-computable cases in test_ties.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from peftlab.report import write_report
from peftlab.report.aggregate import compare_runs
from peftlab.report.pareto import pareto_front
from peftlab.report.runs import load_runs
from peftlab.report.ties import LabelSample, bootstrap_difference, mean_of_scores
from peftlab.report.top_group import BASIS, NO_DATA, top_group
from tests.report.fakes import fake_run


def scores_with(ones: int, n: int = 20) -> list[float]:
    return [1.0] * ones + [0.0] * (n - ones)


def two_seed_folder(root):
    """Three labels with two seeds each; per-example scores give the test accuracies exactly."""
    # Each seed is right on its first k examples.
    # a: 16/20 = 0.80 and 18/20 = 0.90 -> mean 0.85, std sqrt(2 * 0.05^2 / 1) = 0.0707107
    # c: 0.75 and 0.85 -> mean 0.80, std 0.0707107: 0.05 behind a with seeds 0.1 apart: a tie
    # b: 0.20 and 0.20 -> mean 0.20, std 0: 0.65 behind, far outside the seed noise (pooled over the
    #    three labels' 2 seeds: 3 degrees of freedom, so t3 widens c) and the examples': behind, with
    #    only 2 seeds "behind (2 seeds)"
    for label, ones in (("a", (16, 18)), ("b", (4, 4)), ("c", (15, 17))):
        for seed, k in enumerate(ones):
            fake_run(
                root,
                f"{label}-s{seed}",
                label=label,
                method="lora",
                seed=seed,
                example_scores=scores_with(k),
                trainable=1000 * (ord(label) - 96),
                flops_per_step=1e9,
                seconds_per_step=1.0 + seed,
            )
    return root


def test_means_stds_and_ties_over_seeds(tmp_path):
    write_report(two_seed_folder(tmp_path))
    rows = {r["label"]: r for r in json.loads((tmp_path / "leaderboard.json").read_text())}
    assert [r["label"] for r in json.loads((tmp_path / "leaderboard.json").read_text())] == ["a", "c", "b"]
    assert rows["a"]["mean"] == pytest.approx(0.85)
    assert rows["a"]["std"] == pytest.approx(math.sqrt(2 * 0.05**2))
    assert rows["b"]["std"] == pytest.approx(0.0)
    assert rows["c"]["mean"] == pytest.approx(0.80)
    assert rows["a"]["n_seeds"] == 2 and rows["a"]["seeds"] == [0, 1]
    assert (rows["a"]["verdict"], rows["c"]["verdict"], rows["b"]["verdict"]) == ("best", "tie", "behind")
    assert rows["b"]["verdict_text"] == "behind (2 seeds)" and not rows["b"]["top_group"] and rows["c"]["top_group"]
    assert rows["a"]["family_labels"] == 3 and rows["a"]["covers_training_noise"] is False
    assert rows["c"]["tie_basis"] == rows["b"]["tie_basis"] == BASIS
    assert rows["b"]["delta_to_best"] == pytest.approx(0.65)
    assert rows["c"]["ci_low"] <= 0 < rows["c"]["ci_high"]
    assert 0 < rows["b"]["ci_low"] < 0.65 < rows["b"]["ci_high"]
    assert rows["a"]["ci_low"] is None and rows["a"]["tie_basis"] == ""
    # Costs are means over seeds: 40 steps at 1 s and at 2 s per step; FLOPs 40 x 1e9.
    assert rows["a"]["train_seconds"] == pytest.approx(60.0)
    assert rows["a"]["flops"] == pytest.approx(4e10)
    assert rows["b"]["trainable_params"] == 2000
    csv_text = (tmp_path / "leaderboard.csv").read_text()
    assert csv_text.splitlines()[0].startswith("task,metric,higher_is_better,rank,label,mean,std,n_seeds")
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| a | 0.850 ± 0.071 | 2 | best |" in md
    # Every row behind the best shows its interval, whatever its number of seeds.
    for label, word, delta in (("c", "top group", "0.050"), ("b", "behind (2 seeds)", "0.650")):
        ci = f"CI [{rows[label]['ci_low']:.3f}, {rows[label]['ci_high']:.3f}]"
        assert f"| {word} Δ{delta} ({ci}) |" in md
    # Two seeds: said out loud, and how many seeds / examples would separate c from a.
    assert "With 2 seeds, the intervals cover test-set sampling only, not training noise" in md
    assert "Sample size: c vs a, Δ0.050: about " in md and "at 20 test examples, or " in md


def test_lower_is_better_ranks_smallest_first(tmp_path):
    for label, v in (("x", 2.0), ("y", 1.0), ("z", 3.0)):
        fake_run(
            tmp_path,
            label,
            label=label,
            method="lora",
            seed=0,
            example_scores=None,
            score=v,
            metric="perplexity",
            higher_is_better=False,
        )
    (comp,) = compare_runs(load_runs(tmp_path))
    assert [e.label for e in comp.entries] == ["y", "x", "z"]
    # One seed and no per-example scores: the report cannot call a tie or a loss.
    assert [e.tie.verdict for e in comp.entries] == ["best", "undecided", "undecided"]
    assert comp.entries[1].tie.delta == pytest.approx(1.0)


def test_label_falls_back_to_method_and_tasks_are_kept_apart(tmp_path):
    fake_run(tmp_path, "old-lora", label=None, method="lora", seed=0, example_scores=scores_with(10))
    fake_run(tmp_path, "new-lora", label="lora", method="lora", seed=1, example_scores=scores_with(12))
    fake_run(
        tmp_path,
        "emotion",
        label=None,
        method="none",
        seed=0,
        example_scores=scores_with(3),
        task="emotion",
        metric="accuracy",
    )
    comps = {c.task: c for c in compare_runs(load_runs(tmp_path))}
    assert set(comps) == {"sql_demo", "emotion"}
    (lora,) = comps["sql_demo"].entries
    assert lora.label == "lora" and lora.n == 2 and lora.mean == pytest.approx(0.55)


def sample(*seeds: list[float], ids: list[str] | None = None) -> LabelSample:
    """A label from per-example scores of each seed (a mean metric: statistics [score, 1])."""
    ids = ids or [f"t{i}" for i in range(len(seeds[0]))]
    stats = np.array([[[x, 1.0] for x in scores] for scores in seeds])
    return LabelSample(ids, stats, mean_of_scores)


def test_paired_bootstrap_by_hand():
    # One seed each: the seeds add nothing, the examples decide. The best is right on 40 of 50
    # examples, the other on 20 of those 40: the difference per example is 1 on 20 examples and 0
    # on 30, mean 0.4; its standard error is sqrt(0.4 * 0.6 / 50) = 0.069, so the 95% interval is
    # about 0.4 ± 0.136.
    best = sample([1.0] * 40 + [0.0] * 10).stats
    other = sample([1.0] * 20 + [0.0] * 30).stats
    mean, lo, hi = bootstrap_difference(best, other, mean_of_scores)
    assert mean == pytest.approx(0.4)
    assert lo == pytest.approx(0.4 - 0.136, abs=0.03) and hi == pytest.approx(0.4 + 0.136, abs=0.03)
    assert bootstrap_difference(best, other, mean_of_scores) == (mean, lo, hi)  # fixed seed: same interval
    # A constant difference has no spread at all.
    const = bootstrap_difference(sample([0.7] * 10).stats, sample([0.2] * 10).stats, mean_of_scores)
    assert const == pytest.approx((0.5, 0.5, 0.5))
    # Two seeds of the other, one 0.2 and one 0.4 everywhere: the mean over its drawn seeds is
    # 0.2, 0.3 or 0.4 (probability 1/4, 1/2, 1/4), so the interval is [0.3, 0.5] around 0.4.
    seeds = bootstrap_difference(sample([0.7] * 10).stats, sample([0.2] * 10, [0.4] * 10).stats, mean_of_scores)
    assert seeds == pytest.approx((0.4, 0.3, 0.5))


def test_top_group_decides_worse_tie_and_undecided():
    best = sample([1.0] * 40 + [0.0] * 10)
    clearly_worse = sample([1.0] * 20 + [0.0] * 30)
    # Two errors swapped for two other errors: 0.78 vs 0.80 is inside the noise.
    close = sample([1.0] * 38 + [0.0] * 2 + [1.0] * 1 + [0.0] * 9)
    # One run each of labels that do not train (seeds None): test-set noise is all there is.
    found, family = top_group(
        ["best", "close", "worse"], [0.8, 0.78, 0.4], [best, close, clearly_worse], True, [None] * 3
    )
    assert [v.verdict for v in found] == ["best", "tie", "worse"] and family.labels == 3
    assert found[1].ci[0] <= 0 <= found[1].ci[1] and found[2].ci[0] > 0.2 and found[2].basis == BASIS
    # Lower is better: the same numbers as errors (1 = wrong) flip the orientation.
    flip = sample([0.0] * 40 + [1.0] * 10)
    worse_flip = sample([0.0] * 20 + [1.0] * 30)
    found, _ = top_group(["a", "b"], [0.2, 0.6], [flip, worse_flip], False, [None, None])
    assert found[1].verdict == "worse" and found[1].delta == pytest.approx(0.4) and found[1].ci[0] > 0.2
    # No per-example data: undecided, and it is left out of the family.
    found, family = top_group(["a", "b", "c"], [0.8, 0.4, 0.78], [best, None, close], True, [None] * 3)
    assert [(v.verdict, v.basis) for v in found[1:]] == [("undecided", NO_DATA), ("tie", BASIS)]
    assert found[1].ci is None and family.labels == 2
    found, family = top_group(["a", "b"], [0.8, 0.4], [None, best], True, [None, None])
    assert found[1].verdict == "undecided" and family.critical is None


def test_one_seed_label_against_two_seed_best(tmp_path):
    for seed in (0, 1):
        fake_run(tmp_path, f"lora-s{seed}", label="lora", method="lora", seed=seed, example_scores=scores_with(18, 40))
    fake_run(tmp_path, "zero", label="zero_shot", method="none", seed=0, example_scores=scores_with(2, 40))
    fake_run(
        tmp_path, "hybrid", label="lora+prompt_tuning", method="hybrid", seed=0, example_scores=scores_with(17, 40)
    )
    (comp,) = compare_runs(load_runs(tmp_path))
    verdicts = {e.label: (e.tie.verdict, e.tie.basis) for e in comp.entries}
    assert verdicts == {
        "lora": ("best", ""),
        "lora+prompt_tuning": ("tie", BASIS),
        # Separated, but the pair's training noise rests on lora's two seeds: "behind", not "worse".
        "zero_shot": ("behind", BASIS),
    }


def test_pareto_front():
    # cost, goodness: (0, .05) zero-shot, (10, .45), (1e6, .73), (5e6, .84), (1.3e8, .82) dominated by (5e6, .84)
    costs = [1.3e8, 0, 5e6, 10, 1e6, 5e6]
    goods = [0.82, 0.05, 0.84, 0.45, 0.73, 0.80]
    assert pareto_front(costs, goods) == [1, 3, 4, 2]
