"""One training budget for every method of a comparison: steps, examples, tokens, FLOPs or seconds.

Methods differ in cost per step (full fine-tuning computes weight gradients that LoRA does not;
prompt tuning lengthens every sequence), so "the same number of steps" is not the same budget.
A budget says how far along a run is (``progress`` in [0, 1]) from what the run has spent, which it
reads from the run's TrainState (train_state.py, the counters' one owner).

Budgets are exact. A step's steps, examples, tokens and FLOPs are known before it runs (its batch
is drawn first, and FLOPs are counted from its shapes), so:

- Stop rule (``admit``): the run stops at the step boundary nearest the budget. Before each step,
  with ``spent`` so far and the step's ``cost``, the step runs when ``spent + cost - amount <=
  amount - spent`` (what it would overshoot is no more than what stopping now leaves unspent; a tie
  runs). The end is therefore never more than half a step from the budget, on either side. The
  first step always runs, however large (a budget buys at least one step). A steps budget runs
  exactly ``amount`` steps, as before. A step's seconds are not known before it runs: a seconds
  budget keeps running while ``spent < amount`` and may overshoot by up to one step.
- Schedule: the learning-rate schedule is a function of progress, not of a step count known in
  advance: a FLOP budget does not say how many steps it buys, yet every method gets the same
  warmup-then-decay shape over the same budget. Warmup uses the progress at the END of the coming
  step (``progress`` + its exact share ``step_fraction(cost)``, so step 1 is not wasted at lr 0);
  decay uses the progress at its start (so the last step is not at lr 0 either). For a steps
  budget this is the usual linear or cosine schedule. Only a seconds budget estimates the share
  (the mean share of the steps so far; 1% before any).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # train_state imports torch; config and the report import this module's table
    from peftlab.training.train_state import TrainState


@dataclass(frozen=True)
class BudgetKind:
    """One way to give a training budget."""

    name: str  # as an experiment names it: budget: {steps: 40}
    config_key: str  # the train config key that sets it: train.max_steps
    unit: str  # what an amount counts, for the report: "40 steps"


# Every budget kind, once: config validation, `peftlab compare` and the report read this table.
BUDGET_KINDS = (
    BudgetKind("steps", "max_steps", "steps"),
    BudgetKind("epochs", "epochs", "epochs"),  # converted to steps by the training loop
    BudgetKind("examples", "max_examples", "examples"),
    BudgetKind("tokens", "max_tokens", "tokens"),
    BudgetKind("flops", "max_flops", "FLOP"),
    BudgetKind("seconds", "max_seconds", "s of training"),
)
BY_NAME = {k.name: k for k in BUDGET_KINDS}
# What a run spends and counts at every step (epochs are steps by then).
KINDS = tuple(k.name for k in BUDGET_KINDS if k.name != "epochs")


@dataclass
class Budget:
    kind: str
    amount: float
    state: TrainState  # the run's counters: what has been spent is read from it, never copied here
    ended: bool = False  # admit() stopped the run at the step boundary nearest the budget

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"budget kind {self.kind!r}: allowed {', '.join(KINDS)}")

    @property
    def spent(self) -> dict[str, float]:
        """What the run has spent so far, in every kind. Integer counts stay integers (exact however
        large a FLOP count grows); seconds are floats."""
        s = self.state
        return {"steps": s.step, "examples": s.examples, "tokens": s.tokens, "flops": s.flops, "seconds": s.seconds}

    @property
    def progress(self) -> float:
        return min(self.spent[self.kind] / self.amount, 1.0)

    @property
    def done(self) -> bool:
        return self.ended or self.spent[self.kind] >= self.amount

    def admit(self, cost: Mapping[str, float]) -> bool:
        """Whether the coming step, costing ``cost`` (steps, examples, tokens, flops; never seconds),
        runs: only if that ends nearer the budget than stopping now (see the module's stop rule).
        When it does not, the budget is done."""
        spent, step = self.spent[self.kind], cost.get(self.kind)
        if self.spent["steps"] == 0:
            run = True  # every budget buys at least one step
        elif spent >= self.amount:
            run = False
        else:  # seconds (not known before the step): run while not spent
            run = step is None or spent + step - self.amount <= self.amount - spent
        self.ended = self.ended or not run
        return run

    def step_fraction(self, cost: Mapping[str, float] | None = None) -> float:
        """Share of the budget the coming step spends: exact from its ``cost`` (every kind but
        seconds); for seconds the mean share of the steps so far (a guess of 1% before any)."""
        step = (cost or {}).get(self.kind)
        if step is not None:
            return step / self.amount
        steps = self.spent["steps"]
        return self.progress / steps if steps else 0.01


def lr_factor(progress: float, step_fraction: float, schedule: str, warmup_ratio: float) -> float:
    """Multiplier of the peak learning rate for the step about to run, at ``progress`` of the budget.

    Warmup ramps linearly and counts the coming step (so step 1 is not wasted at lr 0); then the
    rate decays linearly or by a half cosine to 0 at the end of the budget, or stays constant."""
    if warmup_ratio > 0 and progress < warmup_ratio:
        return min((progress + step_fraction) / warmup_ratio, 1.0)
    rest = (progress - warmup_ratio) / max(1 - warmup_ratio, 1e-9)
    if schedule == "linear":
        return max(1.0 - rest, 0.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(rest, 1.0)))
    return 1.0


def crossed(before: float, after: float, points: int) -> bool:
    """True when progress moved past one of ``points`` evenly spaced marks (1/n, 2/n, ..., excluding 1):
    a validation at the first step boundary at or past each mark. The last mark is the end of the
    run, wherever the stop rule puts it (the training loop validates there, and only there, once)."""
    return points > 1 and math.floor(after * points + 1e-9) > math.floor(before * points + 1e-9) and after < 1.0
