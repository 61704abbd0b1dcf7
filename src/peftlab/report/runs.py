"""Reading a comparison folder: its finished run folders, nothing re-run.

A comparison folder holds run folders as immediate subfolders; a subfolder counts as a finished
run when it has a summary.json (train.py writes it last). Everything else (plots/, configs/, a
half-written run) is ignored. summary.json is read as a ``RunSummary`` (summary.py), whose
later fields (label, flops, flops_per_step, ...) are optional, as are metrics.jsonl ``flops`` and
predictions.csv ``score``: older runs lack them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from peftlab.errors import PeftlabError
from peftlab.rundir.folder import RunDir
from peftlab.rundir.runio import read_jsonl, read_predictions_csv
from peftlab.rundir.summary import RunSummary


@dataclass
class Prediction:
    """One row of predictions.csv; ``score`` is the example's primary-metric value when recorded."""

    id: str
    input: str
    reference: str
    prediction: str
    score: float | None = None


@dataclass
class Run:
    dir: Path
    summary: RunSummary
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.summary.run or self.dir.name

    @property
    def label(self) -> str:
        """The method's name within the comparison (e.g. lora-r4); older runs only have ``method``."""
        return self.summary.label or self.summary.method

    @property
    def model(self) -> str:
        """The base model's name as the run's config gave it (older summaries: from config.yaml)."""
        return str(self.summary.model or (self.config.get("model") or {}).get("name") or "-")

    @property
    def metric(self) -> str:
        return self.summary.primary_metric

    @property
    def trains(self) -> bool:
        """Whether the run's method trains (the method's own fact, recorded in summary.json; older
        summaries: whether it had trainable parameters)."""
        s = self.summary
        return s.trains if s.trains is not None else s.trainable_params != 0

    @property
    def higher_is_better(self) -> bool:
        return self.summary.higher_is_better

    @property
    def score(self) -> float:
        return float(self.summary.test[self.metric])

    @property
    def seed(self) -> int | None:
        return self.summary.seed

    def example_scores(self) -> dict[str, float]:
        """id -> per-example primary metric, only for rows that recorded one."""
        return {p.id: p.score for p in self.predictions if p.score is not None}

    def validation_curve(self) -> list[dict]:
        """metrics.jsonl validation lines that carry the primary metric."""
        return [m for m in self.metrics if isinstance(m.get("validation"), dict) and self.metric in m["validation"]]


def find_run_dirs(folder: Path) -> list[Path]:
    """Immediate subfolders holding summary.json, sorted by name (a stable report order)."""
    folder = Path(folder)
    if not folder.exists():
        raise PeftlabError(f"{folder}: no such folder (expected a comparison folder holding run folders)")
    if not folder.is_dir():
        raise PeftlabError(f"{folder}: not a folder (expected a comparison folder holding run folders)")
    if RunDir(folder).finished:
        raise PeftlabError(
            f"{folder} is a single run folder; pass the folder that holds the runs to compare (e.g. {folder.parent})"
        )
    dirs = sorted(p for p in folder.iterdir() if p.is_dir() and RunDir(p).finished)
    if not dirs:
        raise PeftlabError(
            f"{folder}: no finished runs (no subfolder has a summary.json; "
            f"runs still training or failed runs are not reported)"
        )
    return dirs


def load_runs(folder: Path) -> list[Run]:
    return [load_run(d) for d in find_run_dirs(folder)]


def load_run(run_dir: Path) -> Run:
    files = RunDir(run_dir)
    summary = RunSummary.read(files.summary)  # names a missing or ill-typed field
    if summary.primary_metric not in summary.test:
        raise PeftlabError(f"{files.summary}: test has no value for the primary metric '{summary.primary_metric}'")
    return Run(
        dir=run_dir,
        summary=summary,
        config=_read_yaml(files.config),
        metrics=read_jsonl(files.metrics),
        predictions=_read_predictions(files.predictions),
    )


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise PeftlabError(f"{path}: invalid YAML ({e})") from None
    return data if isinstance(data, dict) else {}


def _read_predictions(path: Path) -> list[Prediction]:
    if not path.is_file():
        return []
    return [
        Prediction(
            id=r["id"],
            input=r.get("input") or "",
            reference=r["reference"] or "",
            prediction=r["prediction"] or "",
            score=_float(r.get("score")),
        )
        for r in read_predictions_csv(path)
    ]


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None
