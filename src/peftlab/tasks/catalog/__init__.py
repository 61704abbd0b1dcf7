"""Packaged tasks: one YAML per task (dataset, splits, field mapping, prompt, output type, metrics).

An experiment names a task (``task: dialogsum`` or ``task: {name: dialogsum, data_dir: ...}``); the
packaged YAML fills every field the experiment leaves out. The merged task is what the run's
config.yaml records, so a run stays reproducible if a packaged YAML changes later.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from peftlab.errors import PeftlabError

HERE = Path(__file__).parent


@cache
def catalog() -> dict[str, dict]:
    """{task name: its YAML as a dict}, read once from this folder."""
    tasks = {}
    for path in sorted(HERE.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("name") != path.stem:
            raise PeftlabError(f"{path}: a packaged task YAML must be a mapping whose name is '{path.stem}'")
        tasks[path.stem] = data
    return tasks


def resolve_task(task: object, source: str) -> object:
    """The experiment's task section with the packaged task's fields filled in.

    Keys the experiment gives (even null) win over the packaged ones. Anything that is not a
    packaged task name passes through unchanged, to be validated (and rejected) by the config.
    """
    if task is None:
        return {}
    if isinstance(task, str):
        task = {"name": task}
    if not isinstance(task, dict):
        raise PeftlabError(f"{source}: task must be a task name or a mapping of task fields, got {task!r}")
    name = task.get("name")
    packaged = catalog().get(name) if isinstance(name, str) else None  # a wrong type is the config's to report
    return {**packaged, **task} if packaged else task
