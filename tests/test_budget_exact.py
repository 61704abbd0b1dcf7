"""Budgets are exact: a run stops at the step boundary nearest its budget (never more than half a step
past it), the schedule uses each step's exact share of the budget, and summary.json says what was spent."""

from __future__ import annotations

import json

import pytest
import yaml

from peftlab.config import load_config
from peftlab.rundir.runio import read_jsonl
from peftlab.training.budget import Budget, lr_factor
from peftlab.training.train import train
from peftlab.training.train_state import TrainState

# ---- the rule, on numbers --------------------------------------------------------------------------


def run_budget(budget: Budget, costs: list[float]) -> list[float]:
    """Spend ``costs`` one step at a time, as the training loop does: each step's cost is known
    before it runs. Returns the costs of the steps that ran."""
    ran = []
    for c in costs:
        if not budget.admit({"steps": 1, budget.kind: c}):
            break
        budget.state.count_step({budget.kind: c})
        ran.append(c)
    return ran


def test_a_step_runs_only_when_that_lands_nearer_the_budget_than_stopping():
    # 1000 tokens in steps of 300: after 3 steps (900), a 4th would end at 1200 (200 over) while
    # stopping leaves 100 unspent: stop at 900.
    b = Budget("tokens", 1000, TrainState())
    assert run_budget(b, [300] * 10) == [300] * 3
    assert b.done and b.spent["tokens"] == 900 and b.progress == pytest.approx(0.9)
    # 1000 in steps of 300, 300, 300, 150: the 4th ends at 1050 (50 over) < 100 short: it runs.
    b = Budget("tokens", 1000, TrainState())
    assert run_budget(b, [300, 300, 300, 150, 150]) == [300, 300, 300, 150]
    assert b.done and b.spent["tokens"] == 1050


def test_overshoot_never_exceeds_half_a_step_and_ties_spend_the_budget():
    b = Budget("flops", 1000, TrainState())
    assert run_budget(b, [250, 250, 250, 500]) == [250, 250, 250, 500]  # 250 over = 250 short: runs
    for cost in (1, 7, 33, 97, 301, 499):
        b = Budget("examples", 1000, TrainState())
        run_budget(b, [cost] * 2000)
        assert abs(b.spent["examples"] - 1000) <= cost / 2, cost


def test_at_least_one_step_runs_even_when_it_is_bigger_than_the_budget():
    b = Budget("flops", 100, TrainState())
    assert run_budget(b, [1000, 1000]) == [1000]
    assert b.done and b.progress == 1.0


def test_steps_budgets_are_unchanged_and_seconds_keep_running_until_spent():
    b = Budget("steps", 5, TrainState())
    assert len(run_budget(b, [1] * 10)) == 5
    # A step's seconds are not known before it runs: a seconds budget runs until it is spent.
    b = Budget("seconds", 10, TrainState())
    steps = 0
    while b.admit({"steps": 1}):
        b.state.count_step({"steps": 1}, seconds=3)
        steps += 1
    assert steps == 4 and b.spent["seconds"] == 12


def test_the_schedule_uses_the_coming_steps_exact_share():
    # A tokens budget of 1000, warmup 20%: the first step spends 100 tokens = 10% of the budget, so
    # it runs at half the peak rate (not at the 1%/20% = 5% a guessed share gave).
    b = Budget("tokens", 1000, TrainState())
    assert b.step_fraction({"steps": 1, "tokens": 100}) == pytest.approx(0.1)
    assert lr_factor(b.progress, b.step_fraction({"steps": 1, "tokens": 100}), "linear", 0.2) == pytest.approx(0.5)
    b.state.count_step({"tokens": 100})
    assert b.step_fraction({"steps": 1, "tokens": 300}) == pytest.approx(0.3)
    # seconds: estimated from the steps so far (a 1% guess before any)
    s = Budget("seconds", 10, TrainState())
    assert s.step_fraction({"steps": 1}) == pytest.approx(0.01)
    s.state.count_step({}, seconds=2)
    s.state.count_step({}, seconds=2)
    assert s.step_fraction({"steps": 1}) == pytest.approx(0.2)


# ---- the rule in the training loop, on a tiny model ------------------------------------------------


def config(tmp_path, copy_task, name: str, **train) -> object:
    cfg = {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 4, "dropout": 0.0},
        "task": copy_task,
        "train": {"batch_size": 2, "lr": 1e-2, "checkpoint": False, **train},
        "eval": {"batch_size": 4, "max_validation": 1, "max_test": 1},
        "trackers": [],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def steps_of(run_dir) -> list[dict]:
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train_loss" in r]


def test_token_flop_and_example_budgets_stop_at_the_nearest_step_boundary(tmp_path, copy_task):
    # Which batches a step draws does not depend on the budget: a steps run gives every boundary.
    ref = steps_of(train(config(tmp_path, copy_task, "ref", max_steps=8)))
    for kind, key in (("tokens", "max_tokens"), ("flops", "max_flops"), ("examples", "max_examples")):
        marks = [0] + [r[kind] for r in ref]
        # 30% of the way from step 4's boundary to step 5's: stopping after step 4 is nearer.
        amount = marks[4] + 0.3 * (marks[5] - marks[4])
        amount = int(amount) if kind != "flops" else amount
        run_dir = train(config(tmp_path, copy_task, f"{kind}-short", **{key: amount}))
        s = json.loads((run_dir / "summary.json").read_text())
        assert s["steps"] == 4, (kind, amount, marks)
        assert s["budget"] == {"kind": kind, "amount": amount, "spent": marks[4]}
        # 70% of the way: running step 5 overshoots by less than stopping would undershoot.
        amount = marks[4] + 0.7 * (marks[5] - marks[4])
        amount = int(amount) if kind != "flops" else amount
        s = json.loads(
            (train(config(tmp_path, copy_task, f"{kind}-long", **{key: amount})) / "summary.json").read_text()
        )
        assert s["steps"] == 5 and s["budget"]["spent"] == marks[5], (kind, amount, marks)
        assert s["budget"]["spent"] - amount <= (marks[5] - marks[4]) / 2


def test_the_first_steps_learning_rate_uses_its_exact_share_of_the_budget(tmp_path, copy_task):
    ref = steps_of(train(config(tmp_path, copy_task, "ref", max_steps=1)))
    first = ref[0]["tokens"]
    # The first step is an eighth of the budget and warmup a quarter: it runs at half the peak lr.
    run_dir = train(config(tmp_path, copy_task, "warm", max_tokens=8 * first, warmup_ratio=0.25))
    assert steps_of(run_dir)[0]["lr"] == pytest.approx(0.5 * 1e-2)


def test_validations_come_at_budget_fractions_and_the_last_at_the_end(tmp_path, copy_task):
    ref = steps_of(train(config(tmp_path, copy_task, "ref", max_steps=8)))
    marks = [0] + [r["tokens"] for r in ref]
    amount = int(marks[4] + 0.3 * (marks[5] - marks[4]))  # ends after step 4, short of the budget
    run_dir = train(config(tmp_path, copy_task, "evals", max_tokens=amount, evals=4))
    validated = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "validation" in r]
    assert validated == sorted(set(validated))  # no step validated twice
    assert validated.pop(0) == 0  # the untrained model, before the first step
    assert validated[-1] == 4 and len(validated) <= 4
    # every mark j/4 (j < 4) is validated at the first step boundary at or past it
    expected = [next(k for k in range(1, 9) if marks[k] >= j / 4 * amount) for j in (1, 2, 3)]
    assert validated[:-1] == [k for k in dict.fromkeys(expected) if k < 4]


def test_a_budget_smaller_than_one_step_still_runs_one(tmp_path, copy_task):
    s = json.loads((train(config(tmp_path, copy_task, "tiny", max_tokens=1)) / "summary.json").read_text())
    assert s["steps"] == 1 and s["budget"]["spent"] == s["tokens_seen"] > 1


def test_the_curve_starts_at_the_untrained_model_which_is_not_kept(tmp_path, copy_task):
    run_dir = train(config(tmp_path, copy_task, "curve", max_steps=3, evals=1))
    lines = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "validation" in r]
    assert [r["step"] for r in lines] == [0, 3]
    assert lines[0]["flops"] == lines[0]["examples"] == lines[0]["tokens"] == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_step"] == 3  # on the curve, never the kept weights, even on a tie

    cfg = config(tmp_path, copy_task, "off", max_steps=3, evals=1)
    cfg.eval.validate_untrained = False
    lines = [r for r in read_jsonl(train(cfg) / "metrics.jsonl") if "validation" in r]
    assert [r["step"] for r in lines] == [3]
