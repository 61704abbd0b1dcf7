"""Reading a learning-rate search (lr_search.py) back from its run folders: each grid value's best
validation score and cost, and the value chosen. Light (no torch): the report uses it too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peftlab.errors import PeftlabError
from peftlab.summary import RunSummary

SEARCH_DIR = "lr_search"  # the search's run folders, inside the comparison folder


def search_name(label: str, lr: float) -> str:
    return f"{label}-lr{lr:.3g}"


@dataclass
class Trial:
    run: str
    lr: float
    validation: float | None  # best validation value of the primary metric; None: the run did not finish
    flops: float | None
    train_seconds: float | None


@dataclass
class Choice:
    label: str
    metric: str
    higher_is_better: bool
    trials: list[Trial]

    @property
    def chosen(self) -> float | None:
        """The lr with the best validation score; a tie goes to the smaller lr. None until every trial finished."""
        if not self.trials or any(t.validation is None for t in self.trials):
            return None
        sign = 1 if self.higher_is_better else -1
        return max(self.trials, key=lambda t: (sign * t.validation, -t.lr)).lr

    @property
    def flops(self) -> float:
        return sum(t.flops or 0 for t in self.trials)

    @property
    def train_seconds(self) -> float:
        return sum(t.train_seconds or 0 for t in self.trials)


def trial(run_dir: Path, lr: float) -> tuple[Trial, RunSummary | None]:
    path = run_dir / "summary.json"
    if not path.is_file():
        return Trial(run_dir.name, lr, None, None, None), None
    s = RunSummary.read(path)
    best = (s.best_validation or {}).get(s.primary_metric)
    if best is None:
        raise PeftlabError(
            f"{path}: no validation score for {s.primary_metric}; lr_grid chooses on validation "
            "(set evals >= 1 and give the task a validation split or held-out examples)"
        )
    return Trial(s.run or run_dir.name, lr, float(best), s.flops, s.train_seconds), s


def choose(label: str, lrs: list[float], folder: Path) -> Choice:
    """Read the label's search runs (finished or not) from ``folder``/lr_search."""
    trials, summaries = zip(*(trial(folder / SEARCH_DIR / search_name(label, lr), lr) for lr in lrs))
    done = [s for s in summaries if s is not None]
    metric = done[0].primary_metric if done else ""
    higher = done[0].higher_is_better if done else True
    return Choice(label, metric, higher, list(trials))


def found(folder: Path) -> list[Choice]:
    """Every search in a comparison folder, read from its run folders (the report's view)."""
    root = Path(folder) / SEARCH_DIR
    by_label: dict[str, list[tuple[Path, RunSummary]]] = {}
    for path in sorted(root.glob("*/summary.json")) if root.is_dir() else []:
        s = RunSummary.read(path)
        by_label.setdefault(s.label or s.method, []).append((path.parent, s))
    out = []
    for label, runs in sorted(by_label.items()):
        trials = [trial(d, s.lr)[0] for d, s in sorted(runs, key=lambda r: r[1].lr or 0)]
        out.append(Choice(label, runs[0][1].primary_metric, runs[0][1].higher_is_better, trials))
    return out
