"""What a task's data looks like to a model: token lengths, labels, truncation, formatted prompts.

    data_source(target, model, data_dir) -> (task config, model config) from a config YAML or a task name
    data_stats(backbone, task_cfg, task, split)  -> dict of lengths, label counts, counts over the limits
    write_data_plots(stats, folder)      -> lengths-<split>.png (+ labels-<split>.png)

Lengths are counted in the model's tokens, as training counts them: the input is the task prompt
before the chat template (what max_source_tokens limits; a longer prompt loses its middle), the
target is the label sequence Backbone.encode builds (EOS included; what max_target_tokens limits).
The formatted examples are decoded from exactly the ids the model gets (chat template, truncation).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from peftlab.comparison.compare import load_compare
from peftlab.config import ModelConfig, TaskConfig, load_config
from peftlab.errors import PeftlabError, suggest
from peftlab.models.backbone import IGNORE, Backbone
from peftlab.tasks.base import LETTERS, Task
from peftlab.tasks.builtin import BUILTIN
from peftlab.tasks.catalog import catalog, resolve_task


def data_source(target: str, model: str | None = None, data_dir: str | None = None) -> tuple[TaskConfig, ModelConfig]:
    """A run config, an experiment (compare) config, or a packaged / built-in task name."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        task, model_cfg = _from_yaml(path)
        if data_dir is not None:
            task = task.model_copy(update={"data_dir": data_dir})
    else:
        known = [*catalog(), *BUILTIN]
        if target not in known:
            raise PeftlabError(
                f"'{target}' is neither a config YAML nor a task{suggest(target, known)}; tasks: {', '.join(known)}"
            )
        raw = {"name": target, **({"data_dir": data_dir} if data_dir is not None else {})}
        task, model_cfg = TaskConfig.model_validate(resolve_task(raw, "<command line>")), ModelConfig()
    return task, (model_cfg.model_copy(update={"name": model}) if model else model_cfg)


def _from_yaml(path: Path) -> tuple[TaskConfig, ModelConfig]:
    if not path.is_file():
        raise PeftlabError(f"config file {'is a folder, not a file' if path.is_dir() else 'not found'}: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if isinstance(data, dict) and "methods" in data:  # an experiment of `peftlab compare`
        cc = load_compare(path)
        return TaskConfig.model_validate(resolve_task(cc.task, str(path))), cc.model
    cfg = load_config(path)
    return cfg.task, cfg.model


def target_length(backbone: Backbone, target: str) -> int:
    """Tokens of the training target before truncation, EOS included, as Backbone.encode counts them."""
    return len(backbone.kind.target_ids(backbone.tokenizer, target, 10**9))


def label_counts(task: Task, examples) -> dict[str, int] | None:
    """Classification: examples per label word; multiple choice: per answer letter; else None."""
    if task.output_type == "classify":
        counts = Counter(e.target for e in examples)
        return {w: counts.get(w, 0) for w in task.label_words or sorted(counts)}
    if task.output_type == "multiple_choice":
        counts = Counter(LETTERS[e.choices.index(e.target)] for e in examples)
        return dict(sorted(counts.items()))
    return None


def _summary(lengths: list[int]) -> dict:
    a = np.asarray(lengths)
    return {
        "min": int(a.min()),
        "median": float(np.median(a)),
        "mean": float(a.mean()),
        "p95": float(np.percentile(a, 95)),
        "max": int(a.max()),
    }


def formatted(backbone: Backbone, example, task_cfg: TaskConfig) -> dict:
    """One example exactly as training feeds it: decoded input ids (template, truncation) and labels."""
    enc = backbone.encode(example.prompt, example.target, task_cfg.max_source_tokens, task_cfg.max_target_tokens)
    n_src = backbone.kind.source_length(enc)
    decode = backbone.tokenizer.decode
    return {
        "id": example.id,
        "input": decode(enc["input_ids"][:n_src], skip_special_tokens=False),
        "target": decode([t for t in enc["labels"] if t != IGNORE], skip_special_tokens=False),
    }


def data_stats(backbone: Backbone, task_cfg: TaskConfig, task: Task, split: str, n_examples: int = 3) -> dict:
    examples = task.split(split)
    tok = backbone.tokenizer
    src = [len(ids) for ids in tok([e.prompt for e in examples], add_special_tokens=False).input_ids]
    tgt = [target_length(backbone, e.target) for e in examples]
    return {
        "task": task.name,
        "split": split,
        "model": backbone.source,
        "examples": len(examples),
        "output_type": task.output_type,
        "input_tokens": _summary(src),
        "target_tokens": _summary(tgt),
        "input_lengths": src,
        "target_lengths": tgt,
        "max_source_tokens": task_cfg.max_source_tokens,
        "max_target_tokens": task_cfg.max_target_tokens,
        "inputs_over_limit": sum(n > task_cfg.max_source_tokens for n in src),
        "targets_over_limit": sum(n > task_cfg.max_target_tokens for n in tgt),
        "template_tokens": len(backbone.prompt_ids(examples[0].prompt, 10**9)) - src[0],
        "labels": label_counts(task, examples),
        "formatted": [formatted(backbone, e, task_cfg) for e in examples[:n_examples]],
    }
