"""A task: examples per split, how they are prompted, and how generations are scored.

Every method of a comparison gets its examples from here, so all of them see the same prompt.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Callable

from peftlab.config import TaskConfig
from peftlab.data.readers import read_hub, read_rows
from peftlab.errors import PeftlabError
from peftlab.tasks import metrics

SPLITS = ("train", "validation", "test")


@dataclass
class Example:
    id: str
    prompt: str            # the task's prompt text, before any chat template
    target: str            # what the model is trained to produce
    references: list[str]  # what a prediction is scored against (several = multi-reference max)
    choices: list[str] | None = None  # multiple_choice: this example's options (classify: task.label_words)


@dataclass
class Task:
    name: str
    splits: dict[str, list[Example]]
    score_fn: Callable[[list[str], list[list[str]]], dict[str, float]]
    primary: str
    max_new_tokens: int
    higher_is_better: bool = True
    # Turns a user's raw text into the task's prompt (for `peftlab generate`); None = use as is.
    format_input: Callable[[str], str] | None = None
    output_type: str = "generate"
    label_words: list[str] | None = None  # classify: the valid answers

    def split(self, name: str) -> list[Example]:
        if name not in self.splits or not self.splits[name]:
            have = ", ".join(k for k, v in self.splits.items() if v) or "none"
            raise PeftlabError(f"task '{self.name}': split '{name}' is missing or empty (have: {have})")
        return self.splits[name]

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        return self.score_fn(predictions, [e.references for e in examples])


def build_task(cfg: TaskConfig) -> Task:
    from peftlab.tasks.builtin import BUILTIN

    if cfg.data_files is None and cfg.hub is None:
        if cfg.name in BUILTIN:
            return BUILTIN[cfg.name](cfg)
        raise PeftlabError(
            f"task '{cfg.name}': not a built-in task ({', '.join(BUILTIN)}); "
            "give task.data_files (local JSONL/CSV/Parquet) or task.hub (a hub dataset id)"
        )
    for field in ("input_template", "target_field"):
        if getattr(cfg, field) is None:
            raise PeftlabError(f"task.{field} is required for a task read from files or the hub")
    splits: dict[str, list[Example]] = {}
    if cfg.data_files is not None:
        for split, path in cfg.data_files.items():
            if split not in SPLITS:
                raise PeftlabError(f"task.data_files: unknown split '{split}'; allowed: {', '.join(SPLITS)}")
            splits[split] = _examples(cfg, read_rows(path), source=str(path))
    else:
        for split in SPLITS:
            splits[split] = _examples(cfg, read_hub(cfg.hub, split, cfg.hub_config), source=f"{cfg.hub}:{split}")
    if cfg.metric == "execution_accuracy":
        raise PeftlabError("task.metric: execution_accuracy needs a database; use the built-in 'sql_demo' task")
    score_fn = metrics.METRICS[cfg.metric]
    fields = {f for _, f, _, _ in string.Formatter().parse(cfg.input_template) if f}
    format_input = (lambda text, f=fields.pop(): cfg.input_template.format(**{f: text})) if len(fields) == 1 else None
    return Task(cfg.name, splits, score_fn, metrics.PRIMARY[cfg.metric], cfg.max_new_tokens, format_input=format_input,
                output_type=cfg.output_type, label_words=_label_words(cfg, splits))


def _label_words(cfg: TaskConfig, splits: dict[str, list[Example]]) -> list[str] | None:
    if cfg.output_type != "classify":
        return None
    if cfg.label_words is None:
        raise PeftlabError("task.label_words is required with output_type: classify (the words the model may answer)")
    words = list(cfg.label_words.values()) if isinstance(cfg.label_words, dict) else list(cfg.label_words)
    for split, examples in splits.items():
        for e in examples:
            if e.target not in words:
                raise PeftlabError(f"task '{cfg.name}' {split} example {e.id}: label {e.target!r} is not one of "
                                   f"task.label_words {words}")
    return words


def _choices(cfg: TaskConfig, row: dict, where: str) -> tuple[list[str], str]:
    """(options, gold option text) of a multiple-choice row."""
    raw = row.get(cfg.choices_field)
    labels = None
    if isinstance(raw, dict) and "text" in raw:
        labels, raw = raw.get("label"), raw["text"]
    if not isinstance(raw, list) or not raw:
        raise PeftlabError(f"{where}: field '{cfg.choices_field}' must be a non-empty list of options "
                           "or {label: [...], text: [...]}")
    options = [str(o) for o in raw]
    answer = row.get(cfg.target_field)
    if labels is not None and answer in labels:
        return options, options[labels.index(answer)]
    if isinstance(answer, int) and 0 <= answer < len(options):
        return options, options[answer]
    if str(answer) in options:
        return options, str(answer)
    raise PeftlabError(f"{where}: answer {answer!r} in '{cfg.target_field}' matches no option "
                       f"(labels {labels}, options {options})")


def _examples(cfg: TaskConfig, rows: list[dict], source: str) -> list[Example]:
    out = []
    for n, row in enumerate(rows):
        where = f"{source} row {n + 1}"
        choices = None
        if cfg.output_type == "multiple_choice":
            if cfg.choices_field is None:
                raise PeftlabError("task.choices_field is required with output_type: multiple_choice")
            choices, gold = _choices(cfg, row, where)
            letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            row = {**row, "options": "\n".join(f"{letters[i]}. {o}" for i, o in enumerate(choices))}
        try:
            prompt = cfg.input_template.format(**row)
        except KeyError as e:
            raise PeftlabError(f"{where}: task.input_template uses field {e} which the row lacks "
                               f"(fields: {', '.join(row)})") from None
        except (ValueError, IndexError) as e:
            raise PeftlabError(f"task.input_template: invalid format string ({e}); "
                               "use {field} for fields and {{ }} for literal braces") from None
        ref_fields = [f for f in (cfg.reference_fields or [cfg.target_field]) if row.get(f) not in (None, "")]
        references = [str(row[f]) for f in ref_fields]
        target = row.get(cfg.target_field)
        if target in (None, ""):
            if not references:
                raise PeftlabError(f"{where}: no target field '{cfg.target_field}' "
                                   f"(fields: {', '.join(row)})")
            target = references[0]
        if isinstance(cfg.label_words, dict):  # e.g. SST-2's 0/1 -> negative/positive
            words = {str(k): v for k, v in cfg.label_words.items()}
            target = words.get(str(target), str(target))
            references = [words.get(r, r) for r in references]
        if choices is not None:
            target, references = gold, [gold]
        if not references:
            references = [str(target)]
        ex_id = str(row[cfg.id_field]) if cfg.id_field and cfg.id_field in row else str(n)
        out.append(Example(ex_id, prompt, str(target), references, choices))
    return out
