"""Sample-size advice (report/sample_size.py) against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from peftlab.report import sample_size
from peftlab.report.sample_size import Components
from peftlab.report.ties import LabelSample, mean_of_scores


def sample(scores: np.ndarray) -> LabelSample:
    """(seeds, examples) per-example scores as a mean-metric LabelSample."""
    ids = [f"t{i}" for i in range(scores.shape[1])]
    return LabelSample(ids, np.stack([scores, np.ones_like(scores)], axis=-1), mean_of_scores)


def test_seeds_needed_by_hand():
    # v_c = 0.04 (per-example label effect), seed sd 0.03 (v_b = 0.0009), no per-example seed noise; a
    # family so large that the seed estimate's degrees of freedom do not widen c = 1.96. A gap of
    # 0.05 at 80% power needs Var <= (0.05 / (1.96 + 0.8416))^2 = 3.185e-4.
    comp = Components(v_c=0.04, v_b=0.0009, v_e=0.0, trains=(True, True), seed_measured=True, labels=10_000)
    # 64 examples: the examples' share alone, 0.04 / 64 = 6.25e-4, is too much: no number of seeds.
    assert sample_size.seeds_needed(comp, 0.05, 1.96, 64) is None
    # 400 examples: 1e-4 + 2 * 0.0009 / S <= 3.185e-4 needs S >= 8.24: 9 seeds.
    assert sample_size.seeds_needed(comp, 0.05, 1.96, 400) == 9
    assert (
        sample_size.advice(comp, 0.05, 1.96, 64)
        == "over 100 seeds at 64 test examples, or about 9 seeds at 400 test examples"
    )
    # At the advised size the predicted power is at least 80%, one seed fewer it is not.
    assert sample_size.power(comp, 0.05, 1.96, 9, 400) >= 0.8 > sample_size.power(comp, 0.05, 1.96, 8, 400)
    # Fewer than 3 seeds never measure training noise: a gap separable with 1 seed still advises 3.
    assert sample_size.seeds_needed(comp, 0.5, 1.96, 400) == 3


def test_few_seeds_widen_the_critical_value():
    # With 2 labels the pooled seed variance has 2 (S - 1) degrees of freedom: 4 at 3 seeds, and
    # t with 4 degrees of freedom at the normal's 1.96 is 2.776 when seed noise is all there is.
    comp = Components(v_c=0.0, v_b=0.01, v_e=0.0, trains=(True, True), seed_measured=True, labels=2)
    assert comp.critical(1.96, 3, 10**9) == pytest.approx(2.776, abs=0.002)
    assert comp.critical(1.96, 1000, 10**9) == pytest.approx(1.96, abs=0.002)


def test_components_from_seeds_that_shift_every_example():
    # Each seed shifts every example by -0.1, 0 or +0.1; the other label is the same 0.2 lower. The
    # per-example difference is 0.2 everywhere (v_c = 0), and a label's mean over 3 seeds varies by
    # var(-0.1, 0, 0.1) / 3 = 0.01 / 3: the difference of two such means by 0.02 / 3.
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, size=50)
    shifts = np.array([-0.1, 0.0, 0.1])[:, None]
    best, other = sample(base + shifts), sample(base - 0.2 + shifts)
    pooled = sample_size.pooled_seed_variances([best, other])
    comp = sample_size.components(best, other, (True, True), pooled)
    assert comp.v_c == pytest.approx(0.0, abs=1e-12) and comp.seed_measured
    assert comp.variance(3, 50) == pytest.approx(0.02 / 3)
    # One seed everywhere: seed noise unmeasured, the stated default stands in and the advice says so.
    lone = sample_size.components(sample(base[None]), sample(base[None] - 0.2), (True, True), None)
    assert lone.v_b == pytest.approx(sample_size.DEFAULT_SEED_SD**2) and not lone.seed_measured
    assert "seed noise not measured" in sample_size.advice(lone, 0.05, 1.96, 50)


def test_labels_that_do_not_train_need_no_seeds():
    comp = Components(v_c=0.04, v_b=0.0009, v_e=0.0, trains=(False, False), seed_measured=True)
    # Var = 0.04 / n only: n = 400 gives 1e-4 <= 3.185e-4 with 1 "seed" (one run each).
    assert sample_size.seeds_needed(comp, 0.05, 1.96, 400) == 1
    assert sample_size.advice(comp, 0.0, 1.96, 400) == "no gap to separate"
