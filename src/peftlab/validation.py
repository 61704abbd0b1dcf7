"""Validation during training: the validation split scored by free generation, and the best
trainable weights kept (chosen on validation, never on test) and restored at the end."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from peftlab.console import console
from peftlab.evaluate import generate_and_score, limit, show_scores
from peftlab.methods import trainable_parameters
from peftlab.models.backbone import Backbone
from peftlab.tasks.base import Task
from peftlab.train_state import TrainState

if TYPE_CHECKING:  # train.py imports this module
    from peftlab.train import Run


class Validation:
    """Scores the validation split by free generation and keeps the best trainable weights: the
    checkpoint is chosen on validation, never on test."""

    def __init__(self, run: Run, backbone: Backbone, task: Task):
        ev = run.cfg.eval
        self.run, self.backbone, self.task = run, backbone, task
        self.examples = limit(task.splits.get("validation") or [], ev.max_validation)
        self.gen_kwargs = {
            "batch_size": ev.batch_size,
            "num_beams": ev.num_beams,
            "max_source_tokens": run.cfg.task.max_source_tokens,
        }
        self.sign = 1 if task.higher_is_better else -1
        self.last: tuple[int, dict, list[str]] | None = None  # (step, scores, predictions) of the latest pass

    def __bool__(self) -> bool:
        return bool(self.examples)

    def __call__(self, state: TrainState, bar=None, select: bool = True) -> None:
        """Score the validation split; with ``select`` the weights become the best if they beat it."""
        core = self.backbone.model
        scores, preds = generate_and_score(
            self.backbone,
            core,
            self.task,
            self.examples,
            label=f"validate @ step {state.step}",
            bar=bar,
            **self.gen_kwargs,
        )
        state.eval_seconds += scores["seconds"]
        self.last = (state.step, scores, preds)  # a rung of the lr search reads it (rung.py)
        show_scores(f"validation @ step {state.step}", scores, self.task.primary)
        self.run.log({**state.record(), "validation": scores})
        if select and self.sign * scores[self.task.primary] > state.best_score:
            state.best_score, state.best_step, state.best_scores = (
                self.sign * scores[self.task.primary],
                state.step,
                scores,
            )
            # Off the accelerator: the copy is peftlab's bookkeeping, not the method's memory.
            state.best_weights = {n: p.detach().to("cpu", copy=True) for n, p in trainable_parameters(core).items()}


def restore_best(core: torch.nn.Module, state: TrainState, task: Task) -> None:
    if state.best_weights is None:
        return
    with torch.no_grad():
        for name, p in trainable_parameters(core).items():
            p.copy_(state.best_weights[name])
    sign = 1 if task.higher_is_better else -1
    console.print(
        f"best validation {task.primary} = {sign * state.best_score:.4f} at step {state.best_step} (restored)"
    )
