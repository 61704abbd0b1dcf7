"""Each training method at its own best learning rate, chosen on validation, by default: compare's
``lr_search`` (a grid of multiples of each method's own lr) and a method entry's ``lr_grid``.

A fair comparison gives every method its best learning rate, not one tuned for one side. For each
training method ``compare`` runs successive halving over its grid (lr_choice.py has the rule):

1. every grid value trains, at the first seed, on the whole per-run budget's schedule but stops at
   the first rung (``train.stop_at``; rung.py): a checkpoint there, and its validation score;
2. after each rung the best third goes on from its checkpoint to the next rung; after the last, the
   best value's checkpoint becomes the label's first-seed run folder, which goes on to the whole
   budget: nothing is retrained, and that run is the one an uninterrupted run at that lr would be;
3. the other seeds train at the chosen lr as usual.

With the default grid (x1/3, x1, x3) and one rung at a third of the budget, a method's search and
first-seed run cost 3 x 1/3 + 2/3 = 1.67 runs. Search runs live in ``<comparison>/lr_search/``; they
and the run folders are the only state, so rerunning compare skips what reached its rung, resumes
what did not and continues from there. Methods that do not train are never searched.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from peftlab.comparison.lr_choice import PLAN, SEARCH_DIR, Choice, choose, read_trial, search_name
from peftlab.config import ExperimentConfig, dump_config, load_config, same_config
from peftlab.console import console
from peftlab.errors import PeftlabError
from peftlab.methods import get_method, method_options
from peftlab.rundir.folder import RunDir
from peftlab.rundir.runio import atomic_write_text, finished_with_config, inside, read_jsonl
from peftlab.rundir.runlock import RunLock, RunLocked
from peftlab.training import checkpoint
from peftlab.training.runstart import clear

DEFAULT_FACTORS = [1 / 3, 1.0, 3.0]
DEFAULT_RUNGS = [1 / 3]
OFF = ("off", False)


class LrSearch(BaseModel):
    """compare's ``lr_search``: ``off``, or the grid (factors of each method's lr) and the rungs."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="false (or `lr_search: off`): every method trains at its one lr.")
    factors: list[float] = Field(
        default_factory=lambda: list(DEFAULT_FACTORS),
        description="The grid: each training method's lr (train.lr, else its default) times these; a method "
        "entry's lr_grid: [...] gives its own values instead.",
    )
    rungs: list[float] = Field(
        default_factory=lambda: list(DEFAULT_RUNGS),
        description="Fractions of the per-run budget where successive halving stops the grid values, in "
        "increasing order: after each the best third goes on, after the last the best one goes on to the "
        "whole budget as the first-seed run.",
    )

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, v):
        if v in OFF:
            return {"enabled": False}
        if v is True or v == "on":
            return {}
        if not isinstance(v, dict):
            raise ValueError(f"give off, on, or a mapping {{factors: [...], rungs: [...]}}, got {v!r}")
        return v

    @field_validator("factors")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if not v or any(f <= 0 for f in v):
            raise ValueError("give positive factors of each method's lr, e.g. [0.333, 1, 3]")
        return v

    @field_validator("rungs")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < r < 1 for r in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(
                "give fractions of the per-run budget, each 0 < rung < 1 (1 or more is the whole budget or past "
                "it), in increasing order, e.g. [0.34]"
            )
        return v


def settings(search: LrSearch, lr_factors: list[float] | None, source: str) -> LrSearch:
    """The experiment's lr search, with the older key ``lr_factors`` as its factors."""
    if lr_factors is None:
        return search
    if not search.enabled:
        raise PeftlabError(f"{source}: lr_factors chooses each lr by a search, and lr_search is off; remove one")
    if "factors" in search.model_fields_set:
        raise PeftlabError(f"{source}: give lr_search.factors or lr_factors, not both")
    return search.model_copy(update={"factors": list(lr_factors)})


def check_grid(value: object, where: str) -> list[float]:
    """An lr_grid as given in the experiment: a non-empty list of positive numbers, sorted."""
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    if not ok or any(v <= 0 for v in value):
        raise PeftlabError(
            f"{where}: lr_grid must be a list of positive learning rates, e.g. [1.0e-4, 3.0e-4], got {value!r}"
        )
    return sorted({float(v) for v in value})


def base_lr(raw: dict) -> float:
    """The learning rate a run config trains at: train.lr, else its method's default for its options."""
    cfg = load_config(None, base=copy.deepcopy(raw))
    return cfg.train.lr if cfg.train.lr is not None else get_method(cfg.method.name).lr(method_options(cfg.method))


def grids(entries: list[tuple[str, dict, dict]], search: LrSearch, source: str) -> dict[str, list[float]]:
    """label -> the learning rates to try, for each (label, entry, first run config) of a training method
    (one value: trained at it, no search)."""
    out = {}
    for label, entry, raw in entries:
        where = f"{source}: method {label}"
        trains = get_method(raw["method"]["name"]).trains
        if "lr_grid" in entry:
            if not search.enabled:
                raise PeftlabError(f"{where}: lr_grid chooses its lr by a search, and lr_search is off; remove one")
            if not trains:
                raise PeftlabError(f"{where}: lr_grid needs a method that trains ({raw['method']['name']} does not)")
            if (entry.get("train") or {}).get("lr") is not None:
                raise PeftlabError(f"{where}: give lr_grid or train.lr, not both")
            out[label] = check_grid(entry["lr_grid"], where)
        elif search.enabled and trains:
            out[label] = sorted({base_lr(raw) * f for f in search.factors})
    return out


def search_config(raw: dict, lr: float, folder: Path, stop_at: float | None, first_value: bool = True) -> dict:
    """A grid value's search run: the label's first-seed config at that lr, in lr_search/, stopping at
    the rung ``stop_at`` with a checkpoint there. The untrained model is the same for every value (the
    seed makes it, not the lr): only the grid's ``first_value`` scores it (continue_chosen passes its line on)."""
    run = copy.deepcopy(raw)
    run["name"] = search_name(raw["label"], lr)
    run["output_dir"] = str(Path(folder) / SEARCH_DIR)
    inside(folder, Path(run["output_dir"]) / run["name"], f"label {raw['label']!r}")  # its folder is the comparison's
    run["train"] = {**run["train"], "lr": lr, "stop_at": stop_at, "checkpoint": True}
    untrained = (run.get("eval") or {}).get("validate_untrained", True)
    run["eval"] = {**(run.get("eval") or {}), "validate_untrained": bool(untrained and first_value)}
    return run


# launch(runs) -> the names of the runs that failed, or None when the launcher returned before running
# anything (Slurm with wait: false).
Launch = Callable[[list[tuple[str, dict]]], "list[str] | None"]


def search(
    grid: dict[str, list[float]], first: dict[str, dict], folder: Path, rungs: list[float], launch: Launch
) -> tuple[dict[str, Choice], list[str]]:
    """Successive halving for every label of ``grid`` at once (each label's runs of one rung go to the
    launcher together); returns (label -> its Choice, failures in words). A run another driver is
    training is waited for, not trained twice."""
    discard_stale(grid, first, folder, rungs)
    failed: dict[str, str] = {}
    tries: dict[tuple[str, float | None], int] = {}
    while True:
        choices = {lb: choose(lb, lrs, folder, rungs) for lb, lrs in grid.items()}
        todo = [(lb, t, r) for lb, c in choices.items() if lb not in failed for t, r in c.pending()]
        if not todo:
            return choices, list(failed.values())
        bad = launch([(lb, search_config(first[lb], t.lr, folder, r, t.lr == grid[lb][0])) for lb, t, r in todo])
        if bad is None:
            console.print("lr search submitted: run the same command again once it has ended, to go on")
            return choices, [f"{lb} (its lr search has not ended)" for lb in grid]
        for lb, t, r in todo:
            tries[t.run, r] = tries.get((t.run, r), 0) + 1
            if read_trial(t.dir, t.lr)[0].at(r) is not None or waited(t.dir):
                continue  # reached the rung, or another driver trained it: look again
            if t.run in bad or tries[t.run, r] > 1:
                failed.setdefault(lb, f"{lb} (its lr search run {t.run} did not reach its rung)")


def write_plan(folder: Path, grid: dict[str, list[float]], rungs: list[float]) -> None:
    """lr_search/grid.json: what this compare searches (the report reads the same searches)."""
    if grid or (Path(folder) / SEARCH_DIR).is_dir():
        plan = {label: {"lrs": lrs, "rungs": list(rungs)} for label, lrs in grid.items()}
        atomic_write_text(Path(folder) / SEARCH_DIR / PLAN, json.dumps(plan, indent=1) + "\n")


def discard_stale(grid: dict[str, list[float]], first: dict[str, dict], folder: Path, rungs: list[float]) -> None:
    """A stopped search run of another config (the budget or a setting changed) starts again: its rungs
    were reached by another run than the one planned now (its trainer would start it again anyway)."""
    for label, lrs in grid.items():
        for lr in lrs:
            cfg = load_config(None, base=search_config(first[label], lr, folder, rungs[0], lr == lrs[0]))
            run_dir = cfg.run_dir()
            saved = RunDir(run_dir).config
            if saved.is_file() and not RunDir(run_dir).finished:
                if not same_config(cfg)(saved.read_text(encoding="utf-8")):
                    with RunLock(run_dir):
                        clear(run_dir)


def waited(run_dir: Path) -> bool:
    """Wait while another trainer holds the run folder; whether one did."""
    said = False
    while True:
        try:
            with RunLock(run_dir):
                return said
        except RunLocked:
            if not said:
                console.print(f"[dim]{run_dir.name} is being trained by another driver: waiting for it[/dim]")
            said = True
            time.sleep(1.0)


def continue_chosen(choice: Choice, cfg: ExperimentConfig, overwrite: bool) -> bool:
    """Make the chosen value's checkpoint (at its last rung) the start of the label's first-seed run
    ``cfg``: its folder gets that checkpoint, the learning curve so far and its own config, and the run
    resumes from there. False when it cannot (the chosen run trained its whole budget, or its checkpoint
    is gone): the first-seed run then trains from the start."""
    trial, dst = choice.chosen_trial, cfg.run_dir()
    if trial is None or trial.dir is None or trial.finished:
        return False
    try:
        with RunLock(dst):
            done, same = finished_with_config(dst, same_config(cfg))
            if done and not overwrite:
                return same  # finished: compare skips it (or refuses a different config)
            if same and not done and checkpoint.exists(dst) and not overwrite:
                return True  # continued before (and maybe further since)
            if not checkpoint.exists(trial.dir):
                return False
            clear(dst)
            src, out = RunDir(trial.dir), RunDir(dst)
            atomic_write_text(out.metrics, "".join(json.dumps(r) + "\n" for r in curve(choice, cfg)))
            atomic_write_text(out.config, dump_config(cfg))
            os.replace(src.checkpoint, out.checkpoint)  # moved last: a crash before leaves it
            # The checkpoint carries its own copy of the best weights; the search run's is now stale.
            src.best.unlink(missing_ok=True)
    except RunLocked:
        return True  # being continued by another driver
    console.print(f"{cfg.run_name()}: continues {trial.run} from its checkpoint at step {trial.last.step}")
    return True


def curve(choice: Choice, cfg: ExperimentConfig) -> list[dict]:
    """The chosen value's metrics.jsonl up to its rung, starting with the untrained model's validation
    (scored by the grid's first value alone: the same model for every value)."""
    lines = read_jsonl(RunDir(choice.chosen_trial.dir).metrics)
    if cfg.eval.validate_untrained and not any(r["step"] == 0 and "validation" in r for r in lines):
        for t in choice.trials:
            zero = [r for r in read_jsonl(RunDir(t.dir).metrics) if r["step"] == 0 and "validation" in r]
            if zero:
                return zero[:1] + lines
    return lines


def drop_eliminated(choice: Choice) -> None:
    """The checkpoints of the values that did not win: never continued, and a full fine-tuning one
    holds four copies of the model. Their rung records and validation predictions stay."""
    for t in choice.trials:
        if t is choice.chosen_trial or t.dir is None or not checkpoint.exists(t.dir):
            continue
        try:
            with RunLock(t.dir):
                checkpoint.remove(t.dir)
        except RunLocked:
            pass


def clear_search(folder: Path, grid: dict[str, list[float]]) -> None:
    """--overwrite: the labels' search runs start again."""
    for label, lrs in grid.items():
        for lr in lrs:
            run_dir = inside(folder, Path(folder) / SEARCH_DIR / search_name(label, lr), f"label {label!r}")
            if run_dir.is_dir():  # emptied below: checked to be the comparison's own
                with RunLock(run_dir):
                    clear(run_dir)
