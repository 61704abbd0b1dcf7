"""A run stopped at a rung of compare's learning-rate search (``train.stop_at``; lr_search.py).

Successive halving trains every grid value on the whole budget's schedule but stops it at a rung, a
fraction of the budget; the best on validation continues from its checkpoint (nothing is retrained).
A run that reaches its ``stop_at`` (the first step boundary at or past it, the rule validations use)
keeps its checkpoint, writes no summary (it is not finished) and records the rung in its folder:

- ``rungs.jsonl``: one line per rung: the fraction, the step, FLOPs and train seconds so far, the
  validation scores at the rung and the best so far (what the search chooses on; its step), and the
  best's score on each validation example (the report's paired bootstrap of the chosen lr against the
  runner-up);
- ``validation_predictions.csv``: the best validation's predictions so far, with each example's score.

The validation at the rung is the scheduled one when the rung falls on a validation point (evals).
Otherwise it is one more pass, kept out of metrics.jsonl, out of the run's kept weights and out of
its counters, and done after the checkpoint is written: a run continued from the rung is then the run
that was never stopped (its learning curve, kept weights and test), so the lr chosen at the rung
continues as the label's first-seed run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from peftlab.config import ExperimentConfig
from peftlab.evaluation.evaluate import generate_and_score
from peftlab.methods import trainable_parameters
from peftlab.rundir.runio import append_jsonl, write_predictions
from peftlab.training import checkpoint
from peftlab.training.budget import Budget
from peftlab.training.train_state import TrainState

if TYPE_CHECKING:  # annotations only
    from peftlab.training.run import Run
    from peftlab.training.validation import Validation


def reached(cfg: ExperimentConfig, budget: Budget) -> bool:
    """Whether the run is at its rung: stop_at set, reached (with validation's tolerance), budget not spent."""
    stop = cfg.train.stop_at
    return stop is not None and not budget.done and budget.progress >= stop - 1e-9


def record(run: Run, state: TrainState, validate: Validation, budget: Budget) -> dict:
    """Score validation at the rung (or reuse the scheduled pass of this step), keep the best so far's
    per-example scores, and append the rung's line to rungs.jsonl; returns that line."""
    task = validate.task
    if validate.last is not None and validate.last[0] == state.step:
        scores, preds = validate.last[1], validate.last[2]
    else:
        scores, preds = score(validate, f"rung @ step {state.step}")
    best_step, best = state.step, scores
    earlier = state.best_scores is not None and state.best_step != state.step
    if earlier and validate.sign * scores[task.primary] <= state.best_score:
        best_step, best = state.best_step, state.best_scores
        # What that earlier validation predicted, with its weights read back from the run folder.
        preds = score_weights(validate, checkpoint.read_best(run.dir, best_step))
    per_example = task.per_example(preds, validate.examples)
    write_predictions(run.files.validation_predictions, validate.examples, preds, per_example)
    line = {
        "stop_at": run.cfg.train.stop_at,
        "step": state.step,
        "progress": budget.progress,
        "flops": state.flops,
        "train_seconds": state.seconds,
        "metric": task.primary,
        "higher_is_better": task.higher_is_better,
        "validation": scores,
        "best_step": best_step,
        "best_validation": best,
        "example_scores": {e.id: s for e, s in zip(validate.examples, per_example)},  # the best's, for the report
    }
    append_jsonl(run.files.rungs, line)
    return line


def score(validate: Validation, label: str) -> tuple[dict, list[str]]:
    return generate_and_score(
        validate.backbone, validate.backbone.model, validate.task, validate.examples, label=label, **validate.gen_kwargs
    )


def score_weights(validate: Validation, weights: dict[str, torch.Tensor]) -> list[str]:
    """Validation predictions of ``weights`` (the best so far), the current weights put back after."""
    params = trainable_parameters(validate.backbone.model)
    current = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])
        try:
            return score(validate, "rung: best so far")[1]
        finally:
            for n, p in params.items():
                p.copy_(current[n])
