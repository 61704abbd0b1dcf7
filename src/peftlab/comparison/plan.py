"""`peftlab compare EXPERIMENT --plan` and `peftlab check EXPERIMENT`: what a comparison would run, and
what it would cost here, before anything is trained or written.

``validate`` makes compare's own checks (every run config it expands to, named by the experiment's keys;
the lr search's grids). ``make_plan`` adds a probe of each method on this machine (probe.py): the exact
steps and FLOPs per step of each run's budget, trainable parameters, and seconds per optimizer step and
per generated example, from which each run's wall time is estimated:

    start-up (imports, measured once) + model load + steps x seconds per step
    + (validations x validation examples + test examples) x seconds per generated example

A method's first seed under an lr search costs more: every grid value trains to the first rung, the
best third of them to the next, the best one to the end (lr_search.py), each its own process.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peftlab.comparison import lr_search
from peftlab.comparison.compare import check_examples, load_compare, run_configs
from peftlab.comparison.compare_checks import check_runs, label_of
from peftlab.comparison.experiment import CompareConfig, model_folder
from peftlab.comparison.lr_choice import KEEP
from peftlab.config import ExperimentConfig
from peftlab.cpu_allocator import hold_mmap_threshold
from peftlab.evaluation.evaluate import limit
from peftlab.methods import get_method
from peftlab.models.loading import check_remote_code

HOW = (
    "estimated for this machine from a probe of each distinct method setting (runs that differ only in seed "
    "or lr share one; the base model loaded once and copied for each method): the method applied, optimizer "
    "steps on the run's own first batches timed after one warm-up step ({steps}), seconds per FLOP the "
    "mean of those steps' below 1.5x their median (a step slowed by another process's burst counts for "
    "nothing) times the run's exact FLOPs; one batch of validation examples generated to 1 and to 17 "
    "tokens three times each "
    "(prefill and seconds per token fitted to the medians), for a run with train.release_memory after the "
    "others' probes with the allocator's threshold held as that run holds it; a run's process start-up timed "
    "once; wall time "
    "= start-up + load + training + generation: each batch of validation and test examples decoded to its "
    "longest target after training, to max_new_tokens untrained (zero-shot, step 0). Not counted: the "
    "report at the end, forgetting and inference-cost measurements. Other jobs on this machine during the "
    "run but not during the probe (or the reverse) move the real time by their share of the CPU"
)


@dataclass
class Checked:
    """An experiment checked as compare checks it: its runs, their loaded configs, the lr search's grids."""

    cc: CompareConfig
    runs: list[tuple[str, dict]]
    configs: list[ExperimentConfig]
    grid: dict[str, list[float]]  # label -> the lrs searched (labels with more than one value)
    rungs: list[float]


@dataclass
class PlannedRun:
    label: str
    name: str
    method: str
    seed: int
    lrs: list[float] | None  # the lr search's values, on the label's first seed (on each model)
    rungs: list[float] | None
    steps: int
    flops_per_step: float | None
    trainable: int | None = None
    seconds: float | None = None  # the estimate, lr search included
    parts: dict[str, float] = field(default_factory=dict)  # the estimate's terms: start, train, generate
    model: str = ""  # the base model's name (an experiment with models: [...] plans every model's runs)


@dataclass
class Plan:
    experiment: str
    folder: str
    budget: str
    runs: list[PlannedRun]
    seconds: float | None = None
    how: str = ""
    machine: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def validate(path: Path, launcher: dict | None = None) -> Checked:
    """Every check compare makes before its first write, and the lr grids; raises PeftlabError."""
    source = str(path)
    cc = load_compare(Path(path), launcher)
    for model in cc.models or [cc.model]:
        check_remote_code(model, path)
    runs = run_configs(cc, source)
    configs = check_runs(cc, runs, source)
    check_examples(cc, configs, source, set())
    search = lr_search.settings(cc.lr_search, cc.lr_factors, source)
    first: dict[str, dict] = {}
    for label, raw in runs:
        first.setdefault(label, raw)
    entries = {label_of(e): e for e in cc.methods if isinstance(e, dict)}
    grid = lr_search.grids([(lb, entries.get(lb, {}), raw) for lb, raw in first.items()], search, source)
    grid = {lb: lrs for lb, lrs in grid.items() if len(lrs) > 1}
    return Checked(cc, runs, configs, grid, list(search.rungs))


def search_shape(values: int, rungs: list[float]) -> tuple[float, int, int]:
    """A searched first seed in whole-run units: (budget fractions trained, processes started, rung
    validations), successive halving as lr_choice.Choice.rounds does it."""
    alive, done, trained, started, stops = values, 0.0, 0.0, 0, 0
    for i, stop in enumerate([*rungs, 1.0]):
        trained += alive * (stop - done)
        started += alive
        stops += alive if stop < 1.0 else 0
        done = stop
        alive = 1 if i >= len(rungs) - 1 else math.ceil(alive / KEEP)
    return trained, started, stops


def planned_runs(checked: Checked) -> list[PlannedRun]:
    """One line per run compare trains (no probe: steps from a steps budget only)."""
    out, seen = [], set()
    ((kind, amount),) = checked.cc.budget.items()
    for (label, raw), cfg in zip(checked.runs, checked.configs):
        searched = label in checked.grid and (cfg.model.name, label) not in seen  # each model searches its own
        seen.add((cfg.model.name, label))
        steps = int(amount) if kind == "steps" and cfg_trains(cfg) else 0
        out.append(
            PlannedRun(
                label,
                raw["name"],
                cfg.method.name,
                cfg.seed,
                checked.grid[label] if searched else None,
                checked.rungs if searched else None,
                steps,
                None,
                model=cfg.model.name,
            )
        )
    return out


def cfg_trains(cfg: ExperimentConfig) -> bool:
    return get_method(cfg.method.name).trains


def probe_key(cfg: ExperimentConfig) -> str:
    """What a probe measures depends on: runs equal in all else but their names, seed and lr share one."""
    d = cfg.model_dump(mode="json", exclude={"name", "label", "seed", "output_dir", "override", "trackers"})
    d["train"].pop("lr", None)
    return json.dumps(d, sort_keys=True, default=str)


def make_plan(path: Path, launcher: dict | None = None, timing=None) -> Plan:
    """The checked runs, each probed and estimated on this machine (nothing is written)."""
    from peftlab.comparison.compare import prepare_tasks, task_key
    from peftlab.comparison.probe import Timing, probe, startup_seconds

    timing, load_before = timing or Timing(), load_average()
    checked = validate(path, launcher)
    cc, runs = checked.cc, planned_runs(checked)
    tasks = prepare_tasks([cfg.task for cfg in checked.configs], set())
    startup = startup_seconds()
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(checked.configs):
        groups.setdefault(probe_key(cfg), []).append(i)
    bases: dict = {}  # the base model, loaded once and copied for each method
    probes = []
    # train.release_memory holds malloc's mmap threshold for the whole process, and its steps are slower
    # (cpu_allocator.py): those runs are probed last, after the threshold is held here as they hold it.
    for idx in sorted(groups.values(), key=lambda idx: checked.configs[idx[0]].train.release_memory):
        cfgs = [checked.configs[i] for i in idx]
        if cfgs[0].train.release_memory:
            hold_mmap_threshold()
        task = tasks[task_key(cfgs[0].task)]
        probes.append(probe(cfgs, task, cc.processes, timing, bases))
        for i, cfg in zip(idx, cfgs):
            estimate(runs[i], cfg, probes[-1], task, startup)
    bases.clear()
    ((kind, amount),) = cc.budget.items()
    steps = f"at least {timing.min_steps} steps and {timing.min_seconds:g} s of them, at most {timing.max_steps}"
    return Plan(
        str(path),
        str(cc.folder()),
        f"{amount:g} {kind}",
        runs,
        sum(r.seconds or 0.0 for r in runs),
        HOW.format(steps=steps),
        machine(load_before, probes),
    )


def estimate(run: PlannedRun, cfg: ExperimentConfig, measured, task, startup: float) -> None:
    """Fill ``run``'s steps, FLOPs per step, trainable parameters and estimated seconds from the probe."""
    from peftlab.comparison.probe import seconds_budget_steps

    run.trainable = measured.trainable
    counted = measured.counted.get(run.name)
    training = 0.0
    if counted is not None:
        steps = counted.steps
        if steps is None:  # a seconds budget: as many steps as its seconds buy at the probed step time
            steps = seconds_budget_steps(cfg.train.budget()[1], measured.step_seconds)
        run.steps = steps
        run.flops_per_step = counted.flops / max(counted.steps or len(counted.first), 1)
        if measured.flop_seconds is not None and counted.steps is not None:  # the run's exact FLOPs
            training = counted.flops * measured.flop_seconds
        else:
            training = run.steps * (measured.step_seconds or 0.0)
    trained, started, stops = search_shape(len(run.lrs), run.rungs) if run.lrs else (1.0, 1, 0)
    n_val = len(limit(task.splits.get("validation") or [], cfg.eval.max_validation))
    n_test = len(limit(task.split("test"), cfg.eval.max_test))
    d, generating = measured.decoding, 0.0
    if d is not None and counted is None:  # zero-shot: the test alone, at the untrained model's lengths
        generating = d.seconds(n_test, trained=False)
    elif d is not None:  # validations after training and the test at the targets' lengths, the untrained one not
        validations = math.ceil(cfg.train.evals * trained) + stops
        generating = validations * d.seconds(n_val, True) + d.seconds(n_test, True)
        generating += d.seconds(n_val, False) if cfg.eval.validate_untrained else 0.0
    run.parts = {
        "start": started * (startup + measured.load_seconds),
        "train": training * trained,
        "generate": generating,
    }
    run.seconds = sum(run.parts.values())


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine(load_before: float | None = None, probes: list | None = None) -> dict:
    """Where the plan was made: the device, and how busy the machine was (the 1-minute load average before
    and after the probes; the probes' CPU seconds per wall second while their steps were timed)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    shares = [p.cpu_threads for p in probes or [] if p.cpu_threads is not None]
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "load_average": load_average(),
        "load_average_before": load_before,
        "probe_cpu_threads": round(statistics.median(shares), 2) if shares else None,
        "probes": len(probes or []),
        "timed_steps": [p.timed_steps for p in probes or [] if p.timed_steps],
    }


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan_lines(plan: Plan) -> list[str]:
    """The plan as text: a line per run, the total and how it was estimated."""
    head = f"{'run':<28} {'method':<14} {'seed':>4} {'steps':>6} {'FLOPs/step':>11} {'trainable':>12} {'est. wall':>10}"
    lines = [f"plan for {plan.experiment}: {len(plan.runs)} runs, budget {plan.budget}, into {plan.folder}", head]
    several = len({r.model for r in plan.runs}) > 1
    for r in plan.runs:
        flops = f"{r.flops_per_step:.3g}" if r.flops_per_step else "-"
        trainable = f"{r.trainable:,}" if r.trainable is not None else "-"
        wall = duration(r.seconds)
        name = f"{model_folder(r.model)}/{r.name}" if several else r.name
        lines.append(f"{name:<28} {r.method:<14} {r.seed:>4} {r.steps:>6} {flops:>11} {trainable:>12} {wall:>10}")
        if r.lrs:
            lrs = ", ".join(f"{v:.3g}" for v in r.lrs)
            rungs = ", ".join(f"{v:.3g}" for v in r.rungs or [])
            lines.append(f"    lr search on this seed: lr {lrs}; rungs at {rungs} of the budget")
    m = plan.machine
    where = m.get("gpu") or (
        f"{m.get('cpu')}, {m.get('torch_threads')} threads, load average {m.get('load_average_before') or 0:.1f}"
        f" before the probes and {m.get('load_average') or 0:.1f} after"
    )
    if m.get("probe_cpu_threads") is not None and not m.get("gpu"):
        where += f"; the timed steps had {m['probe_cpu_threads']:.1f} CPU seconds per wall second"
    where += f"; {m.get('probes', 0)} probes"
    lines.append(f"estimated wall time: {duration(plan.seconds)} in all, one run at a time, on this machine ({where})")
    lines.append(plan.how)
    return lines
