import pytest

from peftlab.tasks.metrics import exact_match, rouge


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
