"""`peftlab compare EXPERIMENT.yaml`: every method x seed on one model, one task, one budget.

An experiment file holds what all runs share (model, task, train settings with the budget,
eval settings, seeds) and a list of methods, each with its own options and overrides:

    lr_search: {factors: [0.333, 1, 3], rungs: [0.34]}   # the default grid and rung (or off; lr_search.py)
    methods:
      - {label: zero_shot, name: none}
      - {name: lora, rank: 16, train: {lr: 2.0e-3}}
      - {label: lora+prompt_tuning, name: hybrid, methods: [{name: lora}, {name: prompt_tuning}]}

Each (method, seed) is an ordinary run folder, trained in its own process (so its peak memory is
its own). Rerunning the command skips finished runs with the same config and resumes interrupted
ones from their last checkpoint; the report is written at the end (and by `peftlab report`).
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from peftlab.comparison import lr_search, several_models
from peftlab.comparison.compare_checks import (
    calibrated_baselines,
    check_concurrency,
    check_forgetting,
    check_runs,
    check_summaries,
    label_of,
    runs_failed,
)
from peftlab.comparison.experiment import CompareConfig
from peftlab.comparison.launch import Job, Launcher, make_launcher
from peftlab.comparison.lr_choice import Choice
from peftlab.config import (
    ExperimentConfig,
    TaskConfig,
    _format_validation_error,
    load_config,
    same_config,
)
from peftlab.console import console
from peftlab.errors import PeftlabError
from peftlab.measure import general
from peftlab.methods import get_method
from peftlab.models.bundled import ensure_cached
from peftlab.models.loading import check_remote_code
from peftlab.rundir.diskspace import ensure_writable_dir
from peftlab.rundir.runio import finished_with_config, inside
from peftlab.tasks.base import Task, build_task
from peftlab.training.budget import BY_NAME

# What a method entry may set in its own `train:`: how the method is optimised, not how much it is
# trained or on what, nor how it is scored. Everything else is the comparison's, the same for every
# method, unless the entry says `override: <reason>` (the report then marks its row).
METHOD_TRAIN_KEYS = frozenset(
    {
        "lr",
        "weight_decay",
        "warmup_ratio",
        "schedule",
        "max_grad_norm",
        "gradient_checkpointing",
        "release_memory",
        "checkpoint",
        "log_every",
    }
)


# An entry's keys that are the comparison's, not the method's options.
ENTRY_KEYS = ("label", "train", "eval", "override", "calibrate", "lr_grid")


def locked_settings(entry: dict[str, Any]) -> list[str]:
    """The entry's settings that change the budget or what is scored: its eval section and any train key
    outside METHOD_TRAIN_KEYS."""
    train = entry.get("train") or {}
    keys = [f"train.{k}" for k in train if k not in METHOD_TRAIN_KEYS]
    return keys + [f"eval.{k}" for k in entry.get("eval") or {}]


def run_configs(cc: CompareConfig, source: str) -> list[tuple[str, dict]]:
    """(label, run config dict) for every (method, seed), checked as the training command will; with
    several models, every model's, in the order of ``models``."""
    if cc.models is not None:
        return [run for sub in cc.per_model() for run in run_configs(sub, source)]
    ((kind, amount),) = cc.budget.items()
    seen: set[str] = set()
    out = []
    for i, entry in enumerate(cc.methods + calibrated_baselines(cc, source)):
        if not isinstance(entry, dict) or "name" not in entry:
            raise PeftlabError(f"{source}: methods[{i}] must be a mapping with a name, got {entry!r}")
        label = label_of(entry)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", label) or label in seen:
            raise PeftlabError(
                f"{source}: methods[{i}]: label {label!r} must be unique and use letters, digits, "
                ". _ + - (set label: ...)"
            )
        seen.add(label)
        override = entry.get("override")
        locked = locked_settings(entry)
        if locked and not (isinstance(override, str) and override.strip()):
            raise PeftlabError(
                f"{source}: methods[{i}] ({label}): {', '.join(locked)} would give this method another budget "
                "or other scoring than the rest of the comparison. Set it for every method at the top level, "
                f"or say why in the entry (override: <reason>; the report marks the row). A method entry may set "
                f"train.{{{', '.join(sorted(METHOD_TRAIN_KEYS))}}}"
            )
        if entry.get("calibrate") and entry["name"] != "none":
            raise PeftlabError(f"{source}: methods[{i}] ({label}): calibrate: true applies to zero-shot (name: none)")
        method = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
        trains = get_method(method["name"]).trains if method["name"] else True
        train = {**cc.train, BY_NAME[kind].config_key: amount, "evals": cc.evals, **entry.get("train", {})}
        for seed in cc.seeds if trains else cc.seeds[:1]:
            out.append(
                (
                    label,
                    {
                        "name": f"{label}-s{seed}",
                        "label": label,
                        "output_dir": str(cc.folder()),
                        "seed": seed,
                        **({"override": override} if locked else {}),
                        "trackers": cc.trackers,
                        "model": cc.model.model_dump(mode="json"),
                        "method": method,
                        "task": {**cc.task, "calibrate": True} if entry.get("calibrate") else cc.task,
                        "train": train,
                        "eval": {**cc.eval.model_dump(mode="json"), **entry.get("eval", {})},
                        **({"forgetting": cc.forgetting} if cc.forgetting else {}),
                    },
                )
            )
    return out


def load_compare(path: Path, launcher: dict | None = None, models: list[str] | None = None) -> CompareConfig:
    """The experiment file, checked. ``launcher``: the command line's launcher flags, over the file's section;
    ``models``: the command line's --models, instead of the file's model or models (each keeps the file's
    other model settings: dtype, chat_template)."""
    if not path.is_file():
        what = "experiment file is a folder, not a file" if path.is_dir() else "experiment file not found"
        raise PeftlabError(f"{what}: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise PeftlabError(
            f"{path}:{f' line {mark.line + 1}:' if mark else ''} invalid YAML: {getattr(e, 'problem', e)}"
        ) from None
    if not isinstance(data, dict):
        raise PeftlabError(f"{path}: the top level must be a mapping (name, model, task, budget, methods, ...)")
    if launcher:  # the command line's flags win over the file's launcher section
        section = data.get("launcher") if isinstance(data.get("launcher"), dict) else {}
        data["launcher"] = {**section, **launcher}
    if models:
        with_models(data, models)
    try:
        cc = CompareConfig.model_validate(data)
    except ValidationError as e:
        raise PeftlabError(_format_validation_error(e, str(path), CompareConfig)) from None
    check_concurrency(cc, path)
    check_forgetting(cc, path)
    general.check_tasks(cc.general, str(path))  # task names known to lm-eval, before anything runs
    return cc


def with_models(data: dict, names: list[str]) -> None:
    """The experiment's model section(s) replaced by ``names`` (one: model; several: models), each with the
    settings of the file's first model besides its name."""
    listed = data.get("models") if isinstance(data.get("models"), list) else []
    first = data.get("model") if isinstance(data.get("model"), dict) else (listed[0] if listed else {})
    settings = {k: v for k, v in (first if isinstance(first, dict) else {}).items() if k != "name"}
    data.pop("model", None)
    data.pop("models", None)
    if len(names) == 1:
        data["model"] = {**settings, "name": names[0]}
    else:
        data["models"] = [{**settings, "name": n} for n in names]


def compare(path: Path, overwrite: bool = False, launcher: dict | None = None, models: list[str] | None = None) -> Path:
    """Run (or resume) every run of the experiment, then write the report; returns the folder.

    ``launcher``: overrides of the experiment's launcher section (the command line's flags); ``models``:
    the command line's --models (load_compare)."""
    cc = load_compare(Path(path), launcher, models)
    if cc.models is not None:
        return several_models.compare_models(cc, str(path), overwrite, check_comparison, run_comparison)
    checked = check_comparison(cc, str(path), overwrite)
    failed = run_comparison(checked, overwrite)
    if failed:
        raise runs_failed(failed)
    return cc.folder()


@dataclass
class Checked:
    """A single-model comparison checked in full, nothing written yet: its runs (label, raw run config)."""

    cc: CompareConfig
    source: str
    runs: list[tuple[str, dict]]
    prepared: set[str] = field(default_factory=set)  # tasks whose shared inputs this driver made


def check_comparison(cc: CompareConfig, source: str, overwrite: bool) -> Checked:
    """Every run config checked in memory, its errors against the user's file and keys, and the examples
    against the test split, before anything is written or trained."""
    check_remote_code(cc.model, source)  # before anything is written; the runs get the flag (launch/job.py)
    runs = run_configs(cc, source)
    configs = check_runs(cc, runs, source)
    general.check_methods(cc.general, configs, source)  # a model lm-eval would misread, before training
    check_summaries(configs, source, overwrite)
    checked = Checked(cc, source, runs)
    check_examples(cc, configs, source, checked.prepared)
    return checked


def run_comparison(checked: Checked, overwrite: bool) -> list[str]:
    """Train every run of a checked comparison (the lr search first), then write its report; returns the
    runs that failed (the report shows the others)."""
    from peftlab.report import write_report  # local: pulls in matplotlib; load_compare / run_configs need none

    cc, source, runs, prepared = checked.cc, checked.source, checked.runs, checked.prepared
    folder = cc.folder()
    pool = make_launcher(cc.launcher, folder)
    first = {}
    for label, raw in runs:
        first.setdefault(label, raw)
    entries = {label_of(e): e for e in cc.methods if isinstance(e, dict)}
    search = lr_search.settings(cc.lr_search, cc.lr_factors, source)
    grid = lr_search.grids([(lb, entries.get(lb, {}), raw) for lb, raw in first.items()], search, source)
    runs = [(lb, with_lr(raw, grid[lb][0] if len(grid.get(lb, ())) == 1 else None)) for lb, raw in runs]
    grid = {lb: lrs for lb, lrs in grid.items() if len(lrs) > 1}  # one value: trained at it, no search
    ensure_writable_dir(folder, "output_dir")  # a file or a read-only mount in the way: named, not a traceback
    planned = write_configs(folder, runs)  # every config checked before any run starts
    lr_search.write_plan(folder, grid, search.rungs)
    ((kind, amount),) = cc.budget.items()
    console.rule(
        f"[bold]peftlab compare[/bold] {cc.name}: {len(planned)} runs"
        f"{f', lr search over {sum(map(len, grid.values()))} values' if grid else ''}, {cc.model.name}, task "
        f"{planned[0][2].task.name}, budget {amount:g} {kind}"
    )

    prepare = functools.partial(prepare_shared_inputs, cc, prepared=prepared)  # the runs about to start
    failed, t0, continued = [], time.perf_counter(), set()
    if grid:

        def launch(search_runs: list[tuple[str, dict]]) -> list[str] | None:
            bad = execute(pool, write_configs(folder, search_runs), False, cc.processes, prepare)
            return None if cc.detached() else bad

        planned, continued, why = search_lrs(folder, grid, first, runs, search.rungs, launch, overwrite)
        failed += why
    failed += execute(pool, planned, overwrite, cc.processes, prepare, continued)
    if cc.detached():
        console.print(f"submitted; the report will be written to {folder} when the runs end (peftlab report {folder})")
        return failed
    general.score_comparison(cc.general, folder, [cfg.run_dir() for _, _, cfg in planned], console.print, source)
    report = write_report(folder, examples=cc.examples)
    console.print(f"compare wall time {time.perf_counter() - t0:.0f} s; report: {report}")
    return failed


def prepare_shared_inputs(
    cc: CompareConfig, planned: list[tuple[str, Path, ExperimentConfig]], prepared: set[str]
) -> None:
    """What every run reads, made once by the driver before any run starts.

    The bundled model's conversion, a hub dataset's download (into the `datasets` cache) and the
    task's SQLite builds (into peftlab's cache) are all cached by the code that makes them; done
    here, no timed run pays for them, concurrent runs do not race to make them, and on a cluster
    they are made on the driver's machine, which may have network access where compute nodes lack it.
    """
    if cc.model.name == "smollm2-135m" and "model" not in prepared:
        ensure_cached(cc.model.name, log=console.print)
        prepared.add("model")
    # The runs' tasks, and the task whose texts measure forgetting.
    every = [cfg.task for _, _, cfg in planned] + [cfg.forgetting.task for _, _, cfg in planned if cfg.forgetting]
    prepare_tasks(every, prepared)


def task_key(task: TaskConfig) -> str:
    return json.dumps(task.model_dump(mode="json"), sort_keys=True)


def prepare_tasks(tasks: list[TaskConfig], prepared: set[str]) -> dict[str, Task]:
    """Build each distinct task not in ``prepared`` (adding it there); returns those built, by task_key."""
    built = {}
    for key, task in {task_key(t): t for t in tasks}.items():
        if key in prepared:
            continue
        prepared.add(key)
        t0 = time.perf_counter()
        built[key] = build_task(task, log=console.print)
        console.print(
            f"[dim]task {task.name}: {', '.join(f'{len(v)} {k}' for k, v in built[key].splits.items())} examples "
            f"prepared in {time.perf_counter() - t0:.1f} s[/dim]"
        )
    return built


def check_examples(cc: CompareConfig, configs: list[ExperimentConfig], source: str, prepared: set[str]) -> None:
    """The experiment's own ``examples`` must be test examples the runs score: found now, not after every
    run has trained. (The default list is cut to the examples that exist, in the report.)"""
    if "examples" not in cc.model_fields_set or not cc.examples:
        return
    built = prepare_tasks([cfg.task for cfg in configs], prepared)
    scored = max(len(built[task_key(cfg.task)].split("test")[: cfg.eval.max_test]) for cfg in configs)
    beyond = [i for i in cc.examples if i >= scored]
    if beyond:
        raise PeftlabError(
            f"{source}: examples: {beyond} beyond the test examples the runs score: {scored} "
            f"(allowed: indices 0..{scored - 1}; the test split, cut to eval.max_test)"
        )


def write_configs(folder: Path, runs: list[tuple[str, dict]]) -> list[tuple[str, Path, ExperimentConfig]]:
    """Write each run config into <folder>/configs and load it back (the training command's checks)."""
    configs_dir = folder / "configs"
    configs_dir.mkdir(parents=True, exist_ok=True)
    planned = []
    for label, raw in runs:
        cfg_path = inside(folder, configs_dir / f"{raw['name']}.yaml", f"run name {raw['name']!r}")
        cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        cfg = load_config(cfg_path)
        inside(folder, cfg.run_dir(), f"{cfg_path}: name {cfg.run_name()!r}")  # every run folder in the comparison's
        planned.append((label, cfg_path, cfg))
    return planned


def with_lr(raw: dict, lr: float | None) -> dict:
    return raw if lr is None else {**raw, "train": {**raw["train"], "lr": lr}}


def search_lrs(
    folder: Path,
    grid: dict[str, list[float]],
    first: dict[str, dict],
    runs: list[tuple[str, dict]],
    rungs: list[float],
    launch: lr_search.Launch,
    overwrite: bool,
) -> tuple[list[tuple[str, Path, ExperimentConfig]], set[str], list[str]]:
    """Each label of ``grid`` searched (lr_search.py), then its runs at the chosen lr: returns the runs
    to train (written and loaded; a label whose search has not ended is left out), the first-seed runs
    that continue the chosen search run, and the failures in words."""
    if overwrite:
        lr_search.clear_search(folder, grid)
    choices, failed = lr_search.search(grid, first, folder, rungs, launch)
    for choice in choices.values():
        show_choice(choice)
    chosen = {lb: c.chosen for lb, c in choices.items() if c.chosen is not None}
    planned = write_configs(
        folder, [(lb, with_lr(raw, chosen.get(lb))) for lb, raw in runs if lb not in grid or lb in chosen]
    )
    continued = set()
    for label in chosen:
        cfg = next(cfg for _, _, cfg in planned if cfg.run_name() == first[label]["name"])
        if lr_search.continue_chosen(choices[label], cfg, overwrite):
            continued.add(cfg.run_name())
        lr_search.drop_eliminated(choices[label])
    return planned, continued, failed


def show_choice(choice: Choice) -> None:
    """One line per label: each value's best validation so far where it stopped, and the choice."""
    trials = ", ".join(
        f"{t.lr:.3g}: {'-' if t.validation is None else f'{t.validation:.4f}'}"
        + (f" @{100 * t.last.stop_at:.0f}%" if t.last and not t.finished else "")
        for t in choice.trials
    )
    console.print(
        f"lr search {choice.label} (validation {choice.metric or '-'}): {trials} -> "
        f"[bold]{'-' if choice.chosen is None else f'{choice.chosen:.3g}'}[/bold]"
    )


def execute(
    pool: Launcher,
    planned: list[tuple[str, Path, ExperimentConfig]],
    overwrite: bool,
    processes: int,
    prepare: Callable[[list], None] = lambda planned: None,
    continued: set[str] = frozenset(),
) -> list[str]:
    """Launch every planned run not finished yet (after ``prepare``); returns the names of those that failed.
    ``continued``: runs that resume from a checkpoint the lr search put there (never overwritten)."""
    jobs = []
    for n, (_label, cfg_path, cfg) in enumerate(planned, 1):
        run_dir = cfg.run_dir()
        fresh = overwrite and cfg.run_name() not in continued
        done, same = finished_with_config(run_dir, same_config(cfg))
        if done and same and not fresh:
            console.print(f"[dim]{n}/{len(planned)} {cfg.run_name()}: finished, skipped[/dim]")
            continue
        if done and not same and not fresh:
            raise PeftlabError(
                f"{run_dir} holds a finished run made with a different config; pass --overwrite to "
                "rerun it, or give the experiment another name"
            )
        remote = cfg.model.trust_remote_code  # allowed, or compare stopped at its start: the run gets the flag
        jobs.append(Job(cfg.run_name(), cfg_path, run_dir, processes, fresh, trust_remote_code=remote))
    if not jobs:
        return []
    prepare([p for p in planned if p[2].run_name() in {j.name for j in jobs}])
    outcomes = pool.run(jobs)
    for o in outcomes:
        if o.status == "skipped":
            console.print(f"[yellow]{o.name} skipped[/yellow]: {o.detail}")
        elif o.status == "failed":
            console.print(f"[red]{o.name} failed[/red]: {o.detail}")
    return [o.name for o in outcomes if o.status == "failed"]
