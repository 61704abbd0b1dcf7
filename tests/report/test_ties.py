"""Ties by one rule for any number of seeds: a paired bootstrap over seeds and test examples.

Every case is built so that the 95% interval can be worked out by hand (see each comment).
"""

from __future__ import annotations

import pytest

from peftlab.report.aggregate import compare_runs
from peftlab.report.runs import load_runs
from peftlab.report.ties import BASIS, NO_DATA, bootstrap_difference, label_sample
from peftlab.tasks.metrics import bleu
from tests.report.fakes import fake_run


def runs_of(root, label: str, seeds_scores: list[list[float]]) -> None:
    for seed, scores in enumerate(seeds_scores):
        fake_run(root, f"{label}-s{seed}", label=label, method="lora", seed=seed, example_scores=scores)


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
    # Seeds that disagree (12 and 14 of 20) are drawn for each label on its own: the same two
    # labels now differ on a resample by up to 2/20 + example noise, either way round.
    seeds = [[1.0] * 12 + [0.0] * 8, [1.0] * 14 + [0.0] * 6]
    runs_of(tmp_path / "seeds", "a", seeds)
    runs_of(tmp_path / "seeds", "b", seeds)
    v = verdicts(tmp_path / "seeds")["b"]
    assert v.verdict == "tie" and v.ci[0] < 0 < v.ci[1]


def test_worse_on_every_example_of_every_seed_is_worse(tmp_path):
    # best: 0.9 on every example of both seeds; other: 0.6 in one seed, 0.7 in the other.
    # Examples do not matter; the other's two drawn seeds give 0.6, 0.65 or 0.7 with probability
    # 1/4, 1/2, 1/4, so the difference is 0.3, 0.25 or 0.2 and its 95% interval is [0.2, 0.3].
    runs_of(tmp_path, "best", [[0.9] * 40, [0.9] * 40])
    runs_of(tmp_path, "other", [[0.6] * 40, [0.7] * 40])
    v = verdicts(tmp_path)["other"]
    assert (v.verdict, v.basis) == ("worse", BASIS)
    assert v.ci == pytest.approx((0.2, 0.3)) and v.delta == pytest.approx(0.25)


def test_seed_noise_counts_when_the_other_label_has_one_seed(tmp_path):
    # The best's seeds disagree (1.0 and 0.6 on every example; mean 0.8), the other has one seed
    # at 0.7. Its difference is 0.3, 0.1 or -0.1 (best's drawn seeds 1.0+1.0, mixed, 0.6+0.6):
    # interval [-0.1, 0.3], a tie. Averaging the best's seeds per example first (0.8 - 0.7 = 0.1
    # on every example) would hide the seed noise and call it worse.
    runs_of(tmp_path, "best", [[1.0] * 40, [0.6] * 40])
    runs_of(tmp_path, "other", [[0.7] * 40])
    v = verdicts(tmp_path)["other"]
    assert (v.verdict, v.basis) == ("tie", BASIS)
    assert v.ci == pytest.approx((-0.1, 0.3))


def test_test_set_noise_counts_when_seeds_agree(tmp_path):
    # Both seeds of each label agree (std 0): a is right on the first 11 of 20 examples, b on the
    # first 10. The difference is (how often example 10 is drawn) / 20, Binomial(20, 1/20) / 20:
    # 0 with probability 0.95^20 = 0.36 (lower bound 0: a tie), at most 3 with probability 0.984
    # (upper bound 3/20). Two seeds with std 0 do not make one question out of 20 a real win.
    runs_of(tmp_path, "a", [[1.0] * 11 + [0.0] * 9] * 2)
    runs_of(tmp_path, "b", [[1.0] * 10 + [0.0] * 10] * 2)
    v = verdicts(tmp_path)["b"]
    assert (v.verdict, v.basis) == ("tie", BASIS)
    assert v.ci == pytest.approx((0.0, 0.15))


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
