"""Ties by one rule for any number of seeds: a paired bootstrap over seeds and test examples.

Every case is built so that the 95% interval can be worked out by hand (see each comment).
"""

from __future__ import annotations

import pytest

from peftlab.report import write_report
from peftlab.report.aggregate import compare_runs
from peftlab.report.runs import load_runs
from peftlab.report.ties import bootstrap_difference, label_sample
from peftlab.report.top_group import BASIS, NO_DATA
from peftlab.tasks.metrics import bleu
from tests.report.fakes import fake_run


def runs_of(root, label: str, seeds_scores: list[list[float]]) -> None:
    for seed, scores in enumerate(seeds_scores):
        fake_run(root, f"{label}-s{seed}", label=label, method="lora", seed=seed, example_scores=scores, trainable=1000)


def verdicts(root) -> dict:
    (comp,) = compare_runs(load_runs(root))
    return {e.label: e.tie for e in comp.entries}


def test_identical_labels_tie_with_an_interval_of_zero(tmp_path):
    # Same per-example scores in every seed of both labels: every resample's difference is 0.
    same = [[1.0] * 12 + [0.0] * 8] * 2
    runs_of(tmp_path / "same", "a", same)
    runs_of(tmp_path / "same", "b", same)
    v = verdicts(tmp_path / "same")["b"]
    assert (v.verdict, v.basis) == ("tie", BASIS)
    assert v.ci == (0.0, 0.0) and v.delta == pytest.approx(0.0)
    # Seeds that disagree (12 and 14 of 20): the pooled seed noise gives each label's mean a shift
    # either way round, so the same two labels differ on a resample: an interval around 0.
    seeds = [[1.0] * 12 + [0.0] * 8, [1.0] * 14 + [0.0] * 6]
    runs_of(tmp_path / "seeds", "a", seeds)
    runs_of(tmp_path / "seeds", "b", seeds)
    v = verdicts(tmp_path / "seeds")["b"]
    assert v.verdict == "tie" and v.ci[0] < 0 < v.ci[1]


def test_seed_noise_by_hand_three_seeds(tmp_path):
    # Every example scores the same within a seed, so the examples add nothing and the seeds decide.
    # best: 0.8, 0.9, 1.0 (mean 0.9); other: 0.5, 0.6, 0.7 (mean 0.6). Each label's seed means vary
    # by 0.01 (sample variance), pooled: v_b = 0.01 with 2 + 2 = 4 degrees of freedom. The
    # difference of two means over 3 seeds has se = sqrt(2 * 0.01 / 3) = 0.0816; with two labels
    # the bootstrap's c is the normal's 1.96, widened to t with 4 degrees of freedom: 2.776. So the
    # interval is 0.3 ± 0.2267 = [0.073, 0.527]: worse, and with 3 seeds it says "worse".
    runs_of(tmp_path / "far", "best", [[x] * 30 for x in (0.8, 0.9, 1.0)])
    runs_of(tmp_path / "far", "other", [[x] * 30 for x in (0.5, 0.6, 0.7)])
    v = verdicts(tmp_path / "far")["other"]
    assert (v.verdict, v.word, v.seeds) == ("worse", "worse", 3)
    assert v.se == pytest.approx(0.0816, rel=0.04)
    assert v.ci == pytest.approx((0.073, 0.527), abs=0.02)
    # Moved up by 0.1 (mean 0.7, Δ 0.2): 0.2 ± 0.2267 includes 0, the top group holds both.
    runs_of(tmp_path / "near", "best", [[x] * 30 for x in (0.8, 0.9, 1.0)])
    runs_of(tmp_path / "near", "other", [[x] * 30 for x in (0.6, 0.7, 0.8)])
    v = verdicts(tmp_path / "near")["other"]
    assert v.verdict == "tie" and v.word == "top group"
    assert v.ci == pytest.approx((-0.027, 0.427), abs=0.02)


def test_fewer_than_three_seeds_is_behind_not_worse(tmp_path):
    # best: 0.9 everywhere in both seeds; other: 0.6 and 0.7. Pooled v_b = (0 + 0.005) / 2 = 0.0025
    # (2 degrees of freedom); se = sqrt(2 * 0.0025 / 2) = 0.05; c 1.96 widened to t with 2
    # degrees of freedom: 4.303. Interval 0.25 ± 0.215 = [0.035, 0.465]: outside the top group, but
    # two seeds cannot say how noisy training is: "behind (2 seeds)".
    runs_of(tmp_path, "best", [[0.9] * 40, [0.9] * 40])
    runs_of(tmp_path, "other", [[0.6] * 40, [0.7] * 40])
    v = verdicts(tmp_path)["other"]
    assert (v.verdict, v.basis, v.word) == ("behind", BASIS, "behind (2 seeds)")
    assert v.ci == pytest.approx((0.035, 0.465), abs=0.02) and v.delta == pytest.approx(0.25)


def test_seed_noise_counts_when_the_other_label_has_one_seed(tmp_path):
    # The best's seeds disagree (1.0 and 0.6 on every example; mean 0.8), the other has one seed at
    # 0.7. The pool is the best's alone: v_b = 0.08 with 1 degree of freedom; the other's one run
    # carries v_b, the best's mean v_b / 2: se = sqrt(0.12) = 0.346, and t with 1 degree of freedom
    # at the normal's 1.96 is 12.7: an interval of 0.1 ± 4.4, a tie. Averaging the best's seeds per
    # example first (0.8 - 0.7 = 0.1 on every example) would hide the seed noise and call it worse.
    runs_of(tmp_path, "best", [[1.0] * 40, [0.6] * 40])
    runs_of(tmp_path, "other", [[0.7] * 40])
    v = verdicts(tmp_path)["other"]
    assert (v.verdict, v.basis) == ("tie", BASIS)
    assert v.se == pytest.approx(0.346, rel=0.04)
    assert v.ci == pytest.approx((0.1 - 4.4, 0.1 + 4.4), abs=0.25)


def test_test_set_noise_counts_when_seeds_agree(tmp_path):
    # Both seeds of each label agree (no seed noise): a is right on the first 11 of 20 examples, b on
    # the first 10. The per-example difference is 1 on one example of 20: Δ 0.05, se sqrt(0.05 *
    # 0.95 / 20) = 0.0487; c 1.96 widened to t with 19 degrees of freedom: 2.093. Interval 0.05 ±
    # 0.102: a tie. Two seeds with std 0 do not make one question out of 20 a real win.
    runs_of(tmp_path, "a", [[1.0] * 11 + [0.0] * 9] * 2)
    runs_of(tmp_path, "b", [[1.0] * 10 + [0.0] * 10] * 2)
    v = verdicts(tmp_path)["b"]
    assert (v.verdict, v.basis) == ("tie", BASIS)
    assert v.se == pytest.approx(0.0487, rel=0.05)
    assert v.ci == pytest.approx((0.05 - 0.102, 0.05 + 0.102), abs=0.01)


def test_many_labels_widen_what_one_pair_would_separate(tmp_path):
    # 100 examples, one seed each. best is right on examples 0-59; "x" on 0-53: the per-example
    # difference is 1 on 6 of 100, Δ 0.06, se sqrt(0.06 * 0.94 / 100) = 0.0237, Δ / se = 2.53. On
    # its own, one pair's interval (bootstrap percentiles) lies above 0: the old per-pair rule
    # called x worse. Six more labels as good as the best (right on 57 of its 60 and on 3 others,
    # each on examples of its own) make a family of 8 and 28 pairs: c lies between one pair's 1.96
    # and Bonferroni's z at 0.05 / 28 two-sided, 3.12 (widened by t with 99 degrees of freedom,
    # at most 3.25), which is above 2.53: x is in the top group.
    best = [1.0] * 60 + [0.0] * 40
    fake_run(tmp_path, "best", label="best", method="lora", seed=0, example_scores=best, trainable=1)
    fake_run(tmp_path, "x", label="x", method="lora", seed=0, example_scores=[1.0] * 54 + [0.0] * 46, trainable=1)
    for j in range(6):
        scores = list(best)
        for i in range(3):
            scores[3 * j + i] = 0.0  # three of the best's examples missed
            scores[60 + 3 * j + i] = 1.0  # three others right
        fake_run(tmp_path, f"eq{j}", label=f"eq{j}", method="lora", seed=0, example_scores=scores, trainable=1)
    (comp,) = compare_runs(load_runs(tmp_path))
    x = next(e for e in comp.entries if e.label == "x")
    pair_best, pair_x = label_sample(comp.entries[0].runs), label_sample(x.runs)
    _, lo, _ = bootstrap_difference(pair_best.stats, pair_x.stats, pair_best.value)
    assert lo > 0  # one pair alone: separated
    assert x.tie.se == pytest.approx(0.0237, rel=0.05)
    assert 1.96 < comp.family.critical < 3.25 and comp.family.labels == 8
    assert x.tie.verdict == "tie" and x.tie.ci[0] < 0 < x.tie.ci[1]
    assert {e.label for e in comp.top_group} == {"best", "x"} | {f"eq{j}" for j in range(6)}


def corpus_vs_sentence_texts() -> tuple[list[str], list[str], list[str]]:
    """8 long references (40 tokens) and 16 short ones (5 tokens); label "long" copies the long
    ones and misses the short ones, label "short" the other way round."""
    refs = [" ".join(f"r{i}t{j}" for j in range(40 if i < 8 else 5)) for i in range(24)]
    miss = [r.replace("r", "x") for r in refs]  # as long, no token in common
    long_right = [r if i < 8 else m for i, (r, m) in enumerate(zip(refs, miss))]
    short_right = [m if i < 8 else r for i, (r, m) in enumerate(zip(refs, miss))]
    return refs, long_right, short_right


def bleu_runs(root) -> tuple[dict, dict]:
    """One seed each; summary = corpus BLEU-4, predictions.csv score = sentence BLEU-4 (as
    Task.per_example writes it). Returns both numbers per label."""
    refs, long_right, short_right = corpus_vs_sentence_texts()
    corpus, sentence = {}, {}
    for label, preds in (("long", long_right), ("short", short_right)):
        scores = [bleu([p], [[r]])["bleu4"] for p, r in zip(preds, refs)]
        corpus[label] = bleu(preds, [[r] for r in refs])["bleu4"]
        sentence[label] = sum(scores) / len(scores)
        fake_run(
            root,
            label,
            label=label,
            method="lora",
            seed=0,
            example_scores=scores,
            score=corpus[label],
            predictions=preds,
            references=refs,
            task="mt",
            metric="bleu4",
        )
    return corpus, sentence


def test_bleu_ties_recompute_corpus_bleu_not_sentence_bleu(tmp_path):
    corpus, sentence = bleu_runs(tmp_path)
    # Corpus BLEU weighs the long sentences by their n-grams: "long" leads by far; the mean of
    # sentence BLEUs (8/24 vs 16/24) says the opposite.
    assert corpus["long"] - corpus["short"] > 0.5 and sentence["long"] - sentence["short"] == pytest.approx(-1 / 3)
    v = verdicts(tmp_path)["short"]
    assert v.delta == pytest.approx(corpus["long"] - corpus["short"])
    # Resampling the 24 examples: "long" stays ahead unless a resample draws at most one of the 8
    # long ones (probability 0.003), so the whole interval lies above 0.
    assert (v.verdict, v.basis) == ("worse", BASIS)
    assert 0 < v.ci[0] < v.delta < v.ci[1]


def test_bleu_point_estimate_is_the_leaderboard_corpus_bleu_difference(tmp_path):
    corpus, _ = bleu_runs(tmp_path)
    (comp,) = compare_runs(load_runs(tmp_path))
    best, other = (label_sample(e.runs) for e in comp.entries)
    point, lo, hi = bootstrap_difference(best.stats, other.stats, best.value)
    assert point == pytest.approx(comp.entries[0].mean - comp.entries[1].mean, abs=1e-12)
    assert point == pytest.approx(corpus["long"] - corpus["short"], abs=1e-12)
    assert lo < point < hi


def test_a_metric_peftlab_does_not_know_is_undecided(tmp_path):
    # A mean? A corpus statistic? Without the metric's rule there is nothing honest to resample.
    for label, scores in (("a", [1.0] * 10), ("b", [0.0] * 10)):
        fake_run(tmp_path, label, label=label, method="lora", seed=0, example_scores=scores, metric="mystery")
    v = verdicts(tmp_path)["b"]
    assert (v.verdict, v.basis, v.ci) == ("undecided", NO_DATA, None) and v.delta == pytest.approx(1.0)


def test_the_leaderboard_says_what_its_intervals_cover(tmp_path):
    runs_of(tmp_path / "three", "a", [[1.0] * 6 + [0.0] * 4] * 3)
    runs_of(tmp_path / "three", "b", [[1.0] * 5 + [0.0] * 5] * 3)
    (comp,) = compare_runs(load_runs(tmp_path / "three"))
    assert comp.family.covers_training_noise and "seed-to-seed training noise" in comp.family.note()
    runs_of(tmp_path / "one", "a", [[1.0] * 10 + [0.0] * 30])
    runs_of(tmp_path / "one", "b", [[0.0] * 40])
    (comp,) = compare_runs(load_runs(tmp_path / "one"))
    assert not comp.family.covers_training_noise
    assert "With one seed, the intervals cover test-set sampling only, not training noise" in comp.family.note()
    assert comp.entries[1].tie.word == "behind (one seed)"
    write_report(tmp_path / "one")
    md = (tmp_path / "one" / "leaderboard.md").read_text()
    assert "behind (one seed) Δ0.250" in md and "With one seed, the intervals cover" in md
    assert "behind (one seed)" in (tmp_path / "one" / "report.html").read_text()
