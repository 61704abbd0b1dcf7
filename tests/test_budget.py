"""The budget and the progress-based learning-rate schedule, against values worked out by hand."""

import math

import pytest

from peftlab.training.budget import Budget, crossed, lr_factor
from peftlab.training.train_state import TrainState


def budget(kind: str, amount: float) -> Budget:
    """A budget over fresh counters, as a run starts."""
    return Budget(kind, amount, TrainState())


def test_linear_schedule_over_ten_steps_matches_hand_values():
    # 10 steps, warmup 20%: steps 1-2 ramp (0.5, 1.0), then linear decay from 1 at progress 0.2 to 0 at 1.
    b = budget("steps", 10)
    factors = []
    while not b.done:
        factors.append(lr_factor(b.progress, b.step_fraction() if b.spent["steps"] else 0.1, "linear", 0.2))
        b.state.count_step({})
    assert factors[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert factors[3:] == pytest.approx([(1 - (p - 0.2) / 0.8) for p in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)])
    assert len(factors) == 10


def test_cosine_and_constant():
    assert lr_factor(0.6, 0.1, "cosine", 0.2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(0.99, 0.1, "constant", 0.2) == 1.0
    assert lr_factor(0.0, 0.05, "constant", 0.0) == 1.0


def test_flop_budget_stops_when_spent_and_reports_progress():
    b = budget("flops", 1000)
    b.state.count_step({"flops": 300})
    assert b.progress == pytest.approx(0.3) and not b.done
    assert b.step_fraction() == pytest.approx(0.3)
    b.state.count_step({"flops": 300})
    b.state.count_step({"flops": 500})
    assert b.done and b.progress == 1.0


def test_eval_points_are_crossed_once_each():
    marks = [p for p in range(1, 11) if crossed((p - 1) / 10, p / 10, 4)]
    assert marks == [3, 5, 8]  # progress passes 1/4, 2/4, 3/4 (the end is validated separately)
    assert not crossed(0.0, 0.2, 1)


def test_unknown_budget_kind_is_refused():
    with pytest.raises(ValueError, match="allowed steps, examples, tokens, flops, seconds"):
        budget("hours", 1)


def test_the_budget_reads_what_is_spent_from_the_runs_counters():
    # TrainState owns the counters; the budget keeps no copy, so a restored state is what it reads.
    state = TrainState()
    b = Budget("tokens", 1000, state)
    state.count_step({"steps": 1, "examples": 2, "tokens": 300, "flops": 7}, seconds=1.5)
    assert b.spent == {"steps": 1, "examples": 2, "tokens": 300, "flops": 7, "seconds": 1.5}
    state.tokens = 600  # as TrainState.restore sets it on --resume
    assert b.spent["tokens"] == 600 and b.progress == pytest.approx(0.6)
