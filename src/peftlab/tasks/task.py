"""What a task is: its examples per split and how a split's predictions are scored.

The records alone, apart from base.py's building of them, so that the built-in tasks (tasks/builtin),
which build_task dispatches to, can make them without importing base.py back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peftlab.errors import PeftlabError
from peftlab.tasks import metrics


@dataclass
class Example:
    id: str
    # The task's prompt text, before any chat template; for chat data a Conversation (tasks/conversation.py):
    # text that also carries the turns before the final assistant turn, which the backbone formats.
    prompt: str
    target: str  # what the model is trained to produce
    references: list[str]  # what a prediction is scored against (several = multi-reference max)
    choices: list[str] | None = None  # multiple_choice: this example's options (classify: task.label_words)
    database: str | None = None  # text-to-SQL: the SQLite file the SQL runs on


@dataclass
class Task:
    name: str
    splits: dict[str, list[Example]]
    metrics: list[str]  # metric names (peftlab.tasks.metrics); the first one's primary key is the primary
    primary: str
    max_new_tokens: int
    higher_is_better: bool = True
    # Turns a user's raw text into the task's prompt (for `peftlab generate`); None = use as is.
    format_input: Callable[[str], str] | None = None
    output_type: str = "generate"
    label_words: list[str] | None = None  # classify: the valid answers
    # Contextual calibration: the prompt with content-free fields (tasks/calibration.py); None = off.
    content_free: list[str] | None = None
    # Inputs shared between splits and what was done about them (tasks/overlap.py; summary.json's overlap).
    overlap: dict | None = None

    def split(self, name: str) -> list[Example]:
        if name not in self.splits or not self.splits[name]:
            have = ", ".join(k for k, v in self.splits.items() if v) or "none"
            raise PeftlabError(f"task '{self.name}': split '{name}' is missing or empty (have: {have})")
        return self.splits[name]

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        refs = [e.references for e in examples]
        scores: dict[str, float] = {}
        for name in self.metrics:
            metric = metrics.REGISTRY[name]
            if metric.needs_database:
                scores.update(metric.compute(predictions, refs, [e.database for e in examples]))
            else:
                scores.update(metric.compute(predictions, refs))
        return scores

    def per_example(self, predictions: list[str], examples: list[Example]) -> list[float]:
        """The primary metric of each example alone (sentence-level for corpus metrics such as
        BLEU): what paired bootstrap confidence intervals resample."""
        return [self.score([p], [e])[self.primary] for p, e in zip(predictions, examples)]
