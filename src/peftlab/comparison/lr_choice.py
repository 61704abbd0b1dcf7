"""Reading a learning-rate search (lr_search.py) back from its run folders: each grid value's best
validation score at each rung, what it cost, and the value chosen by successive halving. Light (no
torch): the report uses it too.

Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018, Hyperband): every grid value trains
to the first rung; after each rung the best third (rounded up) goes on to the next, and after the
last rung the best one alone goes on, from its checkpoint, to the whole budget, as the label's
first-seed run. "Best" is the best validation score so far (the test split is never looked at); a
tie goes to the smaller lr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from peftlab.errors import PeftlabError
from peftlab.rundir.folder import CONFIG, RunDir
from peftlab.rundir.runio import read_jsonl
from peftlab.rundir.safe_read import read_json
from peftlab.rundir.summary import RunSummary
from peftlab.tasks.metrics import better_sign

SEARCH_DIR = "lr_search"  # the search's run folders, inside the comparison folder
PLAN = "grid.json"  # in lr_search/: label -> {lrs, rungs} as the comparison's last compare planned them
KEEP = 3  # successive halving's rate: after a rung that is not the last, the best third goes on


def search_name(label: str, lr: float) -> str:
    return f"{label}-lr{lr:.3g}"


def rung_key(stop_at: float) -> float:
    """Rungs compared by value: a fraction written to YAML and read back is the same rung."""
    return round(float(stop_at), 9)


@dataclass
class Rung:
    """A search run at one rung (a line of its rungs.jsonl)."""

    stop_at: float
    step: int
    flops: float
    train_seconds: float
    value: float  # the best validation score so far of the primary metric
    best_step: int
    examples: dict[str, float] = field(default_factory=dict, repr=False)  # that best's score per validation example


@dataclass
class Trial:
    """One grid value: its search run's rungs and, for a search run that trained its whole budget (one
    made before rungs existed, or a rung that fell on the budget's last step), its final numbers."""

    run: str
    lr: float
    rungs: dict[float, Rung] = field(default_factory=dict)  # by rung_key(stop_at)
    final: float | None = None  # best validation of a finished run
    final_flops: float | None = None
    final_seconds: float | None = None
    dir: Path | None = None

    def at(self, stop_at: float | None) -> float | None:
        """Best validation so far at that rung (None: the end of the budget); None when not reached."""
        if stop_at is not None and rung_key(stop_at) in self.rungs:
            return self.rungs[rung_key(stop_at)].value
        return self.final

    @property
    def finished(self) -> bool:
        return self.final is not None

    @property
    def last(self) -> Rung | None:
        return self.rungs[max(self.rungs)] if self.rungs else None

    @property
    def validation(self) -> float | None:
        """The best validation so far, where the run is now."""
        return self.final if self.finished else (self.last.value if self.last else None)

    @property
    def flops(self) -> float:
        return (self.final_flops or 0) if self.finished else (self.last.flops if self.last else 0)

    @property
    def train_seconds(self) -> float:
        return (self.final_seconds or 0) if self.finished else (self.last.train_seconds if self.last else 0)


@dataclass
class Choice:
    label: str
    metric: str
    higher_is_better: bool
    trials: list[Trial]
    rungs: list[float] = field(default_factory=list)  # empty: every value trained the whole budget
    run_flops: float | None = None  # the label's mean run (seeds), for costs as multiples of one run
    run_seconds: float | None = None

    def ranked(self, trials: list[Trial], stop_at: float | None) -> list[Trial]:
        """Best first at that rung (ties: the smaller lr)."""
        sign = better_sign(self.higher_is_better)
        return sorted(trials, key=lambda t: (-sign * t.at(stop_at), t.lr))

    def rounds(self) -> list[tuple[float | None, list[Trial], bool]]:
        """Successive halving so far: for each rung (None: the end of the budget) up to the one being
        trained, (rung, its trials, whether every one reached it: then best first)."""
        out, alive = [], sorted(self.trials, key=lambda t: t.lr)
        stops = self.rungs or [None]
        for i, stop_at in enumerate(stops):
            if not alive or any(t.at(stop_at) is None for t in alive):
                return out + [(stop_at, alive, False)]
            ranked = self.ranked(alive, stop_at)
            out.append((stop_at, ranked, True))
            alive = ranked[: 1 if i == len(stops) - 1 else math.ceil(len(alive) / KEEP)]
        return out

    @property
    def decided(self) -> bool:
        rounds = self.rounds()
        return len(rounds) == len(self.rungs or [None]) and rounds[-1][2]

    def pending(self) -> list[tuple[Trial, float | None]]:
        """(trial, rung) of every search run that must train next; empty when decided."""
        stop_at, trials, done = self.rounds()[-1]
        return [] if done else [(t, stop_at) for t in trials if t.at(stop_at) is None]

    @property
    def chosen_trial(self) -> Trial | None:
        return self.rounds()[-1][1][0] if self.decided else None

    @property
    def chosen(self) -> float | None:
        """The chosen lr; None until the search is decided."""
        return self.chosen_trial.lr if self.chosen_trial else None

    @property
    def deciding(self) -> tuple[float | None, list[Trial]] | None:
        """The last rung where the choice was made among more than one value, and those values, best
        first (the choice and its runner-up); None until decided."""
        contests = [(stop_at, trials) for stop_at, trials, _ in self.rounds() if len(trials) > 1]
        return contests[-1] if self.decided and contests else None

    @property
    def runner_up(self) -> Trial | None:
        return self.deciding[1][1] if self.deciding else None

    @property
    def edge(self) -> str | None:
        """'largest' or 'smallest' when the choice is at that end of the grid (widen it), else None."""
        lrs = [t.lr for t in self.trials]
        if self.chosen is None or len(lrs) < 2:
            return None
        return "largest" if self.chosen == max(lrs) else "smallest" if self.chosen == min(lrs) else None

    @property
    def flops(self) -> float:
        """Everything the search runs trained (the chosen value's part goes on in its first-seed run)."""
        return sum(t.flops for t in self.trials)

    @property
    def train_seconds(self) -> float:
        return sum(t.train_seconds for t in self.trials)

    @property
    def extra(self) -> tuple[float, float]:
        """(FLOPs, train seconds) the search spent that no run of the leaderboard contains: all of it
        but the chosen value's training up to its rung, which its first-seed run continues."""
        kept = self.chosen_trial
        reused = kept is not None and not kept.finished and kept.last is not None
        return (
            self.flops - (kept.flops if reused else 0),
            self.train_seconds - (kept.train_seconds if reused else 0),
        )


def read_trial(run_dir: Path, lr: float) -> tuple[Trial, dict | None]:
    """A grid value's search run (finished, stopped at rungs, or not started); and the run's metric
    ({metric, higher_is_better}) when it has reached a rung or finished."""
    run_dir = Path(run_dir)
    t, meta = Trial(run_dir.name, lr, dir=run_dir), None
    for line in read_jsonl(RunDir(run_dir).rungs):  # a rung recorded twice (a rerun after a kill): the last line
        best = line["best_validation"][line["metric"]]
        key = rung_key(line["stop_at"])
        t.rungs[key] = Rung(
            key,
            line["step"],
            line["flops"],
            line["train_seconds"],
            float(best),
            line["best_step"],
            line.get("example_scores") or {},
        )
        meta = {"metric": line["metric"], "higher_is_better": line["higher_is_better"]}
    path = RunDir(run_dir).summary
    if path.is_file():
        s = RunSummary.read(path)
        best = (s.best_validation or {}).get(s.primary_metric)
        if best is None:
            raise PeftlabError(
                f"{path}: no validation score for {s.primary_metric}; the lr search chooses on validation "
                "(give the task a validation split or held-out examples)"
            )
        t.final, t.final_flops, t.final_seconds = float(best), s.flops, s.train_seconds
        meta = {"metric": s.primary_metric, "higher_is_better": s.higher_is_better}
    return t, meta


def choose(label: str, lrs: list[float], folder: Path, rungs: list[float]) -> Choice:
    """Read the label's search runs (at whatever rung each is) from ``folder``/lr_search."""
    read = [read_trial(Path(folder) / SEARCH_DIR / search_name(label, lr), lr) for lr in lrs]
    meta = next((m for _, m in read if m), {"metric": "", "higher_is_better": True})
    return Choice(label, meta["metric"], meta["higher_is_better"], [t for t, _ in read], list(rungs))


def _plan(root: Path) -> dict:
    """grid.json, or, when it is missing or damaged (a truncated write, an edit), the plan read off the
    search runs themselves: grid.json only records what the run folders also say, so nothing is lost."""
    plan, _ = read_json(root / PLAN)
    ok = isinstance(plan, dict) and all(isinstance(p, dict) and {"lrs", "rungs"} <= p.keys() for p in plan.values())
    return plan if ok else scanned(root)


def found(folder: Path) -> list[Choice]:
    """Every search in a comparison folder, as its last compare planned it (lr_search/grid.json), read
    from its run folders: the report's view. Each label's mean run gives the multiples of one run."""
    folder = Path(folder)
    root = folder / SEARCH_DIR
    plan = _plan(root)
    if not plan:
        return []
    summaries = [RunSummary.read(p) for p in sorted(folder.glob("*/summary.json"))]
    out = []
    for label, p in sorted(plan.items()):
        c = choose(label, p["lrs"], folder, p["rungs"])
        if not c.metric:
            continue  # nothing reached a rung yet
        runs = [s for s in summaries if (s.label or s.method) == label]  # the leaderboard's runs
        c.run_flops, c.run_seconds = _mean([s.flops for s in runs]), _mean([s.train_seconds for s in runs])
        out.append(c)
    return out


def scanned(root: Path) -> dict[str, dict]:
    """A plan read off the search runs themselves (folders without grid.json): each run's label and lr
    from its config.yaml, the rungs from what the runs recorded."""
    plan: dict[str, dict] = {}
    for path in sorted(root.glob(f"*/{CONFIG}")) if root.is_dir() else []:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        label = cfg.get("label") or (cfg.get("method") or {}).get("name", path.parent.name)
        lr = (cfg.get("train") or {}).get("lr")
        if lr is None:
            continue
        p = plan.setdefault(label, {"lrs": [], "rungs": []})
        p["lrs"].append(float(lr))
        stops = read_jsonl(RunDir(path.parent).rungs)
        p["rungs"] = sorted({*p["rungs"], *(rung_key(line["stop_at"]) for line in stops)})
    return plan


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def search_cost(folder: Path) -> dict[str, tuple[float, float]]:
    """label -> (FLOPs, train seconds) its lr search spent beyond its leaderboard runs (Choice.extra)."""
    return {c.label: c.extra for c in found(folder)}
