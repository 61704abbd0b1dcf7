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

import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peftlab.comparison import lr_search
from peftlab.comparison.compare import check_examples, load_compare, run_configs
from peftlab.comparison.compare_checks import check_runs, label_of
from peftlab.comparison.experiment import CompareConfig
from peftlab.comparison.lr_choice import KEEP
from peftlab.config import ExperimentConfig
from peftlab.evaluation.evaluate import limit
from peftlab.methods import get_method
from peftlab.models.loading import check_remote_code

HOW = (
    "estimated for this machine from a probe: each method's model loaded and applied once, {steps} optimizer "
    "steps timed on the run's own first batches after one warm-up step, one batch of validation examples "
    "generated to 1 and to 9 tokens (prefill, seconds per token), a run's process start-up timed once; wall "
    "time = start-up + load + steps x step time + generation: each batch of validation and test examples "
    "decoded to its longest target after training, to max_new_tokens untrained (zero-shot, step 0). "
    "Not counted: the report at the end, forgetting and inference-cost measurements"
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
    lrs: list[float] | None  # the lr search's values, on the label's first seed
    rungs: list[float] | None
    steps: int
    flops_per_step: float | None
    trainable: int | None = None
    seconds: float | None = None  # the estimate, lr search included
    parts: dict[str, float] = field(default_factory=dict)  # the estimate's terms: start, train, generate


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
    check_remote_code(cc.model, path)
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
        searched = label in checked.grid and label not in seen
        seen.add(label)
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
            )
        )
    return out


def cfg_trains(cfg: ExperimentConfig) -> bool:
    return get_method(cfg.method.name).trains


def make_plan(path: Path, launcher: dict | None = None, timed_steps: int = 3) -> Plan:
    """The checked runs, each probed and estimated on this machine (nothing is written)."""
    from peftlab.comparison.compare import prepare_tasks, task_key
    from peftlab.comparison.probe import probe, startup_seconds

    checked = validate(path, launcher)
    cc, runs = checked.cc, planned_runs(checked)
    tasks = prepare_tasks([cfg.task for cfg in checked.configs], set())
    startup = startup_seconds()
    by_label: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        by_label.setdefault(run.label, []).append(i)
    for idx in by_label.values():
        cfgs = [checked.configs[i] for i in idx]
        task = tasks[task_key(cfgs[0].task)]
        measured = probe(cfgs, task, cc.processes, timed_steps)
        for i, cfg in zip(idx, cfgs):
            estimate(runs[i], cfg, measured, task, startup)
    ((kind, amount),) = cc.budget.items()
    return Plan(
        str(path),
        str(cc.folder()),
        f"{amount:g} {kind}",
        runs,
        sum(r.seconds or 0.0 for r in runs),
        HOW.format(steps=timed_steps),
        machine(),
    )


def estimate(run: PlannedRun, cfg: ExperimentConfig, measured, task, startup: float) -> None:
    """Fill ``run``'s steps, FLOPs per step, trainable parameters and estimated seconds from the probe."""
    from peftlab.comparison.probe import seconds_budget_steps

    run.trainable = measured.trainable
    counted = measured.counted.get(run.name)
    if counted is not None:
        steps = counted.steps
        if steps is None:  # a seconds budget: as many steps as its seconds buy at the probed step time
            steps = seconds_budget_steps(cfg.train.budget()[1], measured.step_seconds)
        run.steps = steps
        run.flops_per_step = counted.flops / max(counted.steps or len(counted.first), 1)
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
        "train": run.steps * trained * (measured.step_seconds or 0.0),
        "generate": generating,
    }
    run.seconds = sum(run.parts.values())


def machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "load_average": load,
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
    for r in plan.runs:
        flops = f"{r.flops_per_step:.3g}" if r.flops_per_step else "-"
        trainable = f"{r.trainable:,}" if r.trainable is not None else "-"
        wall = duration(r.seconds)
        lines.append(f"{r.name:<28} {r.method:<14} {r.seed:>4} {r.steps:>6} {flops:>11} {trainable:>12} {wall:>10}")
        if r.lrs:
            lrs = ", ".join(f"{v:.3g}" for v in r.lrs)
            rungs = ", ".join(f"{v:.3g}" for v in r.rungs or [])
            lines.append(f"    lr search on this seed: lr {lrs}; rungs at {rungs} of the budget")
    m = plan.machine
    where = (
        m.get("gpu")
        or f"{m.get('cpu')}, {m.get('torch_threads')} threads, load average {m.get('load_average') or 0:.1f}"
    )
    lines.append(f"estimated wall time: {duration(plan.seconds)} in all, one run at a time, on this machine ({where})")
    lines.append(plan.how)
    return lines
