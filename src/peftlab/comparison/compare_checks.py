"""The checks `peftlab compare` makes before anything is written or trained: every generated run
config (its errors named by the experiment file's own keys), the forgetting sample, a seconds budget
on shared CPUs, and the summary.json of finished runs; and a method entry's label.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from peftlab.comparison.experiment import CompareConfig
from peftlab.config import (
    ExperimentConfig,
    ForgettingConfig,
    TaskConfig,
    _format_validation_error,
    check_forgetting_task,
    load_config,
)
from peftlab.errors import PeftlabError
from peftlab.methods import REGISTRY
from peftlab.methods.registry import refuse_misfit_before_loading
from peftlab.rundir.folder import RunDir
from peftlab.rundir.summary import RunSummary
from peftlab.tasks.catalog import resolve_task
from peftlab.training.budget import BY_NAME


def label_of(entry: dict[str, Any]) -> str:
    """The entry's label, else its method's label for these options (hybrids: 'lora+prompt_tuning')."""
    if entry.get("label"):
        return str(entry["label"])
    method = REGISTRY.get(str(entry.get("name")))
    return method.label(entry) if method else str(entry.get("name"))


def check_runs(cc: CompareConfig, runs: list[tuple[str, dict]], source: str) -> list[ExperimentConfig]:
    """Each run config loaded in memory with the training command's checks. A problem is reported against
    the experiment file and its own keys (``budget.steps``, ``methods[1].train.lr``), never against the
    generated run config the user did not write."""
    entries = {label_of(e): (i, e) for i, e in enumerate(cc.methods + calibrated_baselines(cc, source))}
    out = []
    for label, raw in runs:
        i, entry = entries[label]
        try:
            out.append(load_config(None, base=copy.deepcopy(raw)))
            # a method that does not fit the model (BitFit without biases): before the first run, not at its turn
            refuse_misfit_before_loading(out[-1].method.name, out[-1].model)
        except PeftlabError as e:
            raise PeftlabError(in_experiment(e, f"{source}: method {label}", cc, i, entry)) from None
    return out


def in_experiment(err: PeftlabError, where: str, cc: CompareConfig, i: int, entry: dict) -> str:
    """A run config's error in the experiment's words. load_config raises its validation error from the
    pydantic one (its __context__), whose locations map to experiment keys; other messages name the
    '<defaults>' source load_config gives an in-memory config, replaced by ``where``."""
    cause = err.__context__
    if not isinstance(cause, ValidationError) or cause.title != ExperimentConfig.__name__:
        # e.g. the method's options ('method.rank: ...', methods/base.py): the entry's keys are methods[i].*
        text = str(err).removeprefix("<defaults>: ").removeprefix("<defaults>")
        text = re.sub(r"(?m)^(\s*)method([.:])", rf"\g<1>methods[{i}]\g<2>", text)
        return f"{where}: {text}"
    lines = _format_validation_error(cause, where).split("\n")[1:]  # one line per error, '  loc: ...'
    mapped = []
    for line, e in zip(lines, cause.errors()):
        loc = ".".join(str(p) for p in e["loc"])
        mapped.append(line.replace(f"  {loc}:", f"  {experiment_key(e['loc'], cc, i, entry)}:", 1))
    if len(mapped) == 1:
        return f"{where}: {mapped[0].strip()}"
    return "\n".join([f"{where}: invalid settings", *mapped])


def experiment_key(loc: tuple, cc: CompareConfig, i: int, entry: dict) -> str:
    """Where in the experiment file a run config's key ``loc`` came from (run_configs builds one from the other)."""
    head, rest = str(loc[0]), ".".join(str(p) for p in loc[1:])
    sub = f".{rest}" if rest else ""
    ((kind, _),) = cc.budget.items()
    if head in ("train", "eval") and loc[1:] and str(loc[1]) in (entry.get(head) or {}):
        return f"methods[{i}].{head}{sub}"  # the method entry's own setting
    if head == "train" and loc[1:] and str(loc[1]) == BY_NAME[kind].config_key:
        return f"budget.{kind}{'.' + '.'.join(map(str, loc[2:])) if loc[2:] else ''}"
    if head == "train" and loc[1:] and str(loc[1]) == "evals":
        return "evals"
    if head == "method":
        return f"methods[{i}]{sub}"
    if head in ("name", "label"):
        return f"methods[{i}].label"
    if head == "seed":
        return "seeds"
    if head == "override":
        return f"methods[{i}].override"
    return f"{head}{sub}"


def check_forgetting(cc: CompareConfig, path: Path) -> None:
    """A forgetting sample from the trained task itself is refused (unless in_domain: true) before any
    run config is written."""
    if not isinstance(cc.forgetting, dict):
        return
    section = dict(cc.forgetting)
    if isinstance(section.get("task"), (str, dict)):
        task = section["task"]
        section["task"] = resolve_task({"name": task} if isinstance(task, str) else task, f"{path}: forgetting")
    try:
        task, forgetting = TaskConfig.model_validate(resolve_task(cc.task, str(path))), ForgettingConfig(**section)
    except (ValidationError, TypeError):
        return  # reported, with its key, when the run configs are loaded
    check_forgetting_task(task, forgetting, str(path))


def check_concurrency(cc: CompareConfig, path: Path) -> None:
    """A seconds budget means nothing when runs share CPUs: each would steal the others' time."""
    lc = cc.launcher
    shared_cpu = lc.name == "local" and lc.parallel > 1 and not (lc.devices and torch.cuda.is_available())
    if "seconds" in cc.budget and shared_cpu:
        raise PeftlabError(
            f"{path}: a seconds budget with --parallel {lc.parallel} on CPU: concurrent runs would steal each "
            "other's time. Use a flops, tokens, examples or steps budget, or --parallel 1"
        )


def check_summaries(configs: list[ExperimentConfig], source: str, overwrite: bool) -> None:
    """A finished run whose summary.json cannot be read (cut short, not an object, fields missing) is an
    error, not a run to skip: skipped, its row would be missing or the report would fail after everything
    else trained. Nor is it retrained unasked: a finished run's checkpoint is gone (the summary replaced
    it), so retraining starts it over and replaces its adapter and predictions. The message says how."""
    if overwrite:
        return  # every run trains again
    bad, paths = [], []
    for cfg in configs:
        path = RunDir(cfg.run_dir()).summary
        if path.is_file():
            try:
                RunSummary.read(path)
            except PeftlabError as e:
                bad.append(str(e))
                paths.append(shlex.quote(str(path)))
    if bad:
        raise PeftlabError(
            f"{source}: {len(bad)} finished run(s) have an unreadable summary.json, so their results are unknown:\n  "
            + "\n  ".join(bad)
            + f"\nTo train them again from the start (a finished run keeps no checkpoint): rm {' '.join(paths)} "
            "and run the same command again; or pass --overwrite to rerun every run"
        )


def calibrated_baselines(cc: CompareConfig, source: str) -> list[dict[str, Any]]:
    """A contextually calibrated copy of each zero-shot entry, on tasks scored by log-likelihood: an
    uncalibrated zero-shot baseline can be far below chance (its prior over the answers), which
    flatters every method measured against it."""
    task = resolve_task(cc.task, source)
    if not cc.calibrated_zero_shot or not isinstance(task, dict) or task.get("calibrate"):
        return []
    if task.get("output_type") not in ("classify", "multiple_choice"):
        return []
    zero_shot = [e for e in cc.methods if isinstance(e, dict) and e.get("name") == "none" and not e.get("calibrate")]
    return [{**e, "label": f"{label_of(e)}+calibrated", "calibrate": True} for e in zero_shot]


def runs_failed(failed: list[str]) -> PeftlabError:
    """The error a comparison ends with when some of its runs failed (the report is written first)."""
    return PeftlabError(
        f"{len(failed)} run(s) failed: {', '.join(failed)}; the report shows the others. "
        "Rerun the same command to retry them (finished runs are kept)."
    )
