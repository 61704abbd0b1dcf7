import math

import numpy as np
import pytest

from peftlab.tasks.metrics import (
    METRICS,
    REGISTRY,
    accuracy,
    bleu,
    bleu_of_statistics,
    bleu_statistics,
    classification,
    exact_match,
    macro_f1,
    metric_of_primary,
    rouge,
)


def test_rouge_matches_hand_computed_values():
    # pred tokens: the cat sat on the mat (6); ref: the cat is on the mat (6)
    # unigram overlap: the x2, cat, on, mat = 5 -> P = R = F = 5/6
    # bigrams pred: the-cat cat-sat sat-on on-the the-mat; ref: the-cat cat-is is-on on-the the-mat
    # overlap 3 of 5 -> F = 3/5; LCS = the cat on the mat = 5 -> F = 5/6
    s = rouge(["The cat sat on the mat."], [["The cat is on the mat."]])
    assert s["rouge1"] == pytest.approx(5 / 6)
    assert s["rouge2"] == pytest.approx(3 / 5)
    assert s["rougeL"] == pytest.approx(5 / 6)


def test_rouge_two_sentences_and_stemming():
    # Stemming maps "runs"/"running" to "run". Sentence-level rougeLsum on two sentences:
    # pred = "dogs run. cats sleep." ref = "dogs running. cats sleeping." -> identical after stemming.
    s = rouge(["Dogs run. Cats sleep."], [["Dogs running. Cats sleeping."]])
    assert s["rouge1"] == pytest.approx(1.0)
    assert s["rougeLsum"] == pytest.approx(1.0)


def test_rouge_multi_reference_takes_the_best_reference():
    single_bad = rouge(["a b c d"], [["x y z w"]])["rouge1"]
    multi = rouge(["a b c d"], [["x y z w", "a b c d"]])["rouge1"]
    assert single_bad == 0.0 and multi == pytest.approx(1.0)
    # averaged over examples: one perfect, one zero -> 0.5
    assert rouge(["a b", "c d"], [["a b"], ["e f"]])["rouge1"] == pytest.approx(0.5)


def test_exact_match_normalises_case_space_and_trailing_period():
    s = exact_match(["The  Answer.", "no"], [["the answer"], ["yes", "maybe"]])
    assert s["exact_match"] == pytest.approx(0.5)


def test_bleu1_clipped_unigram_precision_and_brevity_penalty_by_hand():
    # pred: the the the cat (c = 4 tokens); ref: the cat is here now (r = 5 tokens)
    # clipped unigram matches: "the" min(3, 1) = 1, "cat" 1 -> p1 = 2/4 = 0.5
    # c < r -> BP = exp(1 - r/c) = exp(1 - 5/4) = exp(-0.25)
    s = bleu(["the the the cat"], [["the cat is here now"]])
    assert s["bleu1"] == pytest.approx(0.5 * math.exp(-0.25))
    # bigrams pred: the-the x2, the-cat; ref has the-cat -> p2 = 1/3; BLEU-2 = BP * sqrt(p1 * p2)
    assert s["bleu2"] == pytest.approx(math.exp(-0.25) * math.sqrt(0.5 * 1 / 3))
    assert set(s) == {"bleu1", "bleu2", "bleu3", "bleu4"}
    assert bleu(["a b c d e"], [["a b c d e"]]) == pytest.approx({f"bleu{n}": 1.0 for n in (1, 2, 3, 4)})


def test_bleu_multi_reference_clips_by_best_reference_and_pads_missing_refs():
    # ex1 pred "the the cat" (3): counts the:2 cat:1
    #   ref A "the cat sat" allows the:1 cat:1 -> alone 2/3; ref B "the the dog" allows the:2 -> alone 2/3
    #   both: clip by the max count over refs, the:2 cat:1 -> 3/3. Both refs have length 3 -> r = 3.
    assert bleu(["the the cat"], [["the cat sat"]])["bleu1"] == pytest.approx(2 / 3)
    assert bleu(["the the cat"], [["the the dog"]])["bleu1"] == pytest.approx(2 / 3)
    assert bleu(["the the cat"], [["the cat sat", "the the dog"]])["bleu1"] == pytest.approx(1.0)
    # ex2 pred "a b" (2), a single ref "a b c d" (4) -> 2/2 matched, r = 4.
    # corpus: p1 = (3 + 2) / (3 + 2) = 1, c = 5, r = 3 + 4 = 7 -> BP = exp(1 - 7/5) = exp(-0.4).
    # (Padding ex2's missing second reference with '' would make its closest length 0 and BP = 1.)
    s = bleu(["the the cat", "a b"], [["the cat sat", "the the dog"], ["a b c d"]])
    assert s["bleu1"] == pytest.approx(math.exp(-0.4))


def test_bleu_rejects_an_example_without_reference():
    with pytest.raises(ValueError, match="example 1"):
        bleu(["a", "b"], [["a"], []])


def test_accuracy_and_macro_f1_on_a_hand_computed_confusion():
    golds = ["pos", "pos", "pos", "neg", "neg", "neu"]
    preds = ["pos", "pos", "neg", "neg", "pos", " neu "]  # whitespace is stripped
    # correct: 1, 2, 4, 6 -> accuracy 4/6
    # pos: TP 2, FP 1 (ex 5), FN 1 (ex 3) -> F1 = 4 / (4 + 1 + 1) = 2/3
    # neg: TP 1, FP 1 (ex 3), FN 1 (ex 5) -> F1 = 2 / 4 = 1/2
    # neu: TP 1, FP 0, FN 0 -> F1 = 1
    # macro = (2/3 + 1/2 + 1) / 3 = 13/18
    refs = [[g] for g in golds]
    assert accuracy(preds, refs) == pytest.approx({"accuracy": 4 / 6})
    assert macro_f1(preds, refs) == pytest.approx({"macro_f1": 13 / 18})
    assert classification(preds, refs) == pytest.approx({"accuracy": 4 / 6, "macro_f1": 13 / 18})


def test_accuracy_any_reference_and_labels_are_case_sensitive():
    # ex1 matches its second reference -> gold "b"; ex2 "A" != "a" -> miss, gold = first ref "a"
    # accuracy 1/2. Labels {a, b}: b TP 1 -> F1 1; a TP 0 FN 1, and "A" is not a class -> F1 0. macro 1/2
    preds, refs = ["b", "A"], [["a", "b"], ["a"]]
    assert accuracy(preds, refs)["accuracy"] == pytest.approx(0.5)
    assert macro_f1(preds, refs)["macro_f1"] == pytest.approx(0.5)


def test_metrics_registry():
    assert set(METRICS) == {"rouge", "bleu", "exact_match", "accuracy"}
    assert set(METRICS["accuracy"](["x"], [["x"]])) == {"accuracy", "macro_f1"}


def test_corpus_bleu_from_summed_statistics_equals_bleu_on_any_resample():
    # Resampling BLEU sums per-example statistics: on any examples, repeats included, the sum must
    # give exactly what bleu() gives on those examples (brevity penalty, 'exp' smoothing of
    # n-gram orders without a match, clipping by the best of several references).
    preds = ["the cat sat on the mat", "a b", "x y z w v", "", "the the the", "one two three four five six"]
    refs = [
        ["the cat is on the mat", "a cat sat on a mat"],
        ["a b c d"],
        ["p q r"],
        ["nothing here"],
        ["the cat"],
        ["one two three four five six seven"],
    ]
    stats = bleu_statistics(preds, refs)
    assert stats.shape == (6, 10)
    for idx in ([0], [0, 1, 2, 3, 4, 5], [1, 1, 2], [3], [2, 3], [5, 5, 0, 4], [4, 4]):
        expected = bleu([preds[i] for i in idx], [refs[i] for i in idx])["bleu4"]
        assert bleu_of_statistics(stats[idx].sum(axis=0)) == pytest.approx(expected, abs=1e-12), idx
    # Vectorised over leading axes: a stack of sums gives a stack of scores.
    sums = np.stack([stats[[0, 5]].sum(axis=0), stats[[2]].sum(axis=0)])
    assert bleu_of_statistics(sums).shape == (2,)


def test_only_bleu_needs_corpus_statistics_and_primaries_map_back():
    assert [m.name for m in REGISTRY.values() if m.corpus is not None] == ["bleu"]
    assert metric_of_primary("bleu4").name == "bleu" and metric_of_primary("rougeL").name == "rouge"
    assert metric_of_primary("macro_f1") is None
