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
    score_fn = metrics.rouge if cfg.metric == "rouge" else metrics.exact_match
    fields = {f for _, f, _, _ in string.Formatter().parse(cfg.input_template) if f}
    format_input = (lambda text, f=fields.pop(): cfg.input_template.format(**{f: text})) if len(fields) == 1 else None
    return Task(cfg.name, splits, score_fn, metrics.PRIMARY[cfg.metric], cfg.max_new_tokens, format_input=format_input)


def _examples(cfg: TaskConfig, rows: list[dict], source: str) -> list[Example]:
    out = []
    for n, row in enumerate(rows):
        where = f"{source} row {n + 1}"
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
        if not references:
            references = [str(target)]
        ex_id = str(row[cfg.id_field]) if cfg.id_field and cfg.id_field in row else str(n)
        out.append(Example(ex_id, prompt, str(target), references))
    return out
