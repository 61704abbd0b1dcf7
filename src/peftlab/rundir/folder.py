"""The run folder's layout: the one place that names what a run writes, so that the trainer, the
report, re-evaluation and the launchers cannot disagree about a file name.

config.yaml                  the resolved config (every default filled in)
metrics.jsonl                one line per logged step / validation (the learning curve)
summary.json                 final numbers, cost, versions, hardware (RunSummary in summary.py); a
                             folder holding one is a finished run
predictions.csv              id, input, reference(s), prediction on the test split
adapter/                     the trained weights (safetensors) + method config
checkpoint/                  the newest resumable checkpoint, the one before it inside (checkpoint.py)
best.safetensors             the best validation's trainable weights while the run trains
lock.json                    who trains the folder now (runlock.py)
train.log                    a launcher's copy of the trainer's output (comparison/launch/)
rungs.jsonl                  an lr-search run's line per rung it stopped at (comparison/rung.py)
validation_predictions.csv   an lr-search run's best validation so far, per example
predictions_<split>.csv      a re-evaluation's predictions (evaluation/evaluate.py; <split>_beamN too)
eval_<split>.json            a re-evaluation's scores
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
PREDICTIONS = "predictions.csv"
ADAPTER = "adapter"
CHECKPOINT = "checkpoint"
BEST = "best.safetensors"  # also the name of its copy inside each checkpoint
LOCK = "lock.json"
LOG = "train.log"
RUNGS = "rungs.jsonl"
VALIDATION_PREDICTIONS = "validation_predictions.csv"
WRITE_TEST = ".write-test"  # written and removed at the start: an unwritable disk fails before training


def pending(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place (a crash leaves the old one whole).
    Hidden, so that nothing that lists the folder takes it for the real file."""
    return path.parent / f".{path.name}.tmp"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run folder: ``RunDir(cfg.run_dir()).summary`` and so on."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # a str from a CLI argument works too

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def predictions(self) -> Path:
        return self.root / PREDICTIONS

    @property
    def adapter(self) -> Path:
        return self.root / ADAPTER

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT

    @property
    def best(self) -> Path:
        return self.root / BEST

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def log(self) -> Path:
        return self.root / LOG

    @property
    def rungs(self) -> Path:
        return self.root / RUNGS

    @property
    def validation_predictions(self) -> Path:
        return self.root / VALIDATION_PREDICTIONS

    @property
    def write_test(self) -> Path:
        return self.root / WRITE_TEST

    def eval_predictions(self, split: str) -> Path:
        """A re-evaluation's predictions on ``split`` (evaluate.py; it adds _beamN to the split's name)."""
        return self.root / f"predictions_{split}.csv"

    def eval_scores(self, split: str) -> Path:
        return self.root / f"eval_{split}.json"

    @property
    def finished(self) -> bool:
        """A run that got as far as its summary: the only file written after the test."""
        return self.summary.is_file()
