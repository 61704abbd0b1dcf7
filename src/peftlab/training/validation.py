"""Validation during training: the validation split scored by free generation, and the best
trainable weights kept (chosen on validation, never on test) and restored at the end.

The best weights are kept on disk (checkpoint.keep_best), not copied in memory: a copy held through
the remaining optimizer steps would be counted in their peak memory on CPU (the process's resident
set), charging full fine-tuning one model copy of bookkeeping. The write happens here, between steps,
outside the timed step and outside the training peak."""

from __future__ import annotations

from pathlib import Path

import torch

from peftlab.console import console
from peftlab.evaluation.evaluate import generate_and_score, limit, show_scores
from peftlab.methods import trainable_parameters
from peftlab.models.backbone import Backbone
from peftlab.tasks.base import Task
from peftlab.tasks.metrics import better_sign
from peftlab.training import checkpoint
from peftlab.training.run import Run
from peftlab.training.train_state import TrainState


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
            "share_prefix": ev.share_prefix,
            "kv_cache_gb": ev.kv_cache_gb,
        }
        self.sign = better_sign(task.higher_is_better)
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
            checkpoint.keep_best(self.run.dir, trainable_parameters(core), state.step)


def restore_best(core: torch.nn.Module, state: TrainState, task: Task, run_dir: Path) -> None:
    """Put the best validation's weights back (read from the run folder's file) before the test."""
    if state.best_scores is None:  # no validation was kept as the best
        return
    best = checkpoint.read_best(run_dir, state.best_step)
    with torch.no_grad():
        for name, p in trainable_parameters(core).items():
            p.copy_(best.pop(name))  # each tensor freed once copied
    sign = better_sign(task.higher_is_better)
    console.print(
        f"best validation {task.primary} = {sign * state.best_score:.4f} at step {state.best_step} (restored)"
    )
