"""What a training run has done so far: the counters a checkpoint saves and ``--resume`` restores.

A checkpoint is safetensors (weights, optimizer, best weights) plus this state as JSON
(checkpoint.py; the best weights live in a file, never in this state); ``to_json`` / ``from_json``
are its only writer and reader. Random states are stored as JSON lists, so loading a checkpoint
unpickles nothing.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import psutil
import torch

PROCESS_START = psutil.Process().create_time()  # seconds since the epoch, like time.time()


@dataclass
class TrainState:
    step: int = 0
    examples: int = 0  # training examples seen (all processes)
    tokens: int = 0  # real (non-padding) tokens seen
    flops: int = 0  # analytical training FLOPs so far
    seconds: float = 0.0  # wall time of optimizer steps only
    eval_seconds: float = 0.0  # validation passes so far (generation and scoring)
    wall_seconds: float = 0.0  # the whole run's wall time up to this process's start (earlier processes)
    budget_spent: dict[str, float] = field(default_factory=dict)
    sampler: tuple[int, int] = (0, 0)  # (epoch, offset) of the batch order
    best_score: float = -math.inf  # signed so that larger is better whatever the metric's direction
    best_step: int = 0
    best_scores: dict | None = None  # every validation metric at best_step (None: no best kept yet)
    peak_memory_bytes: int = 0  # whole run so far
    train_peak_memory_bytes: int = 0  # optimizer steps so far

    def to_json(self) -> dict:
        """The checkpoint's state.json, with the python/NumPy/torch random states of this moment."""
        return {
            "step": self.step,
            "examples": self.examples,
            "tokens": self.tokens,
            "flops": self.flops,
            "seconds": self.seconds,
            "eval_seconds": self.eval_seconds,
            "wall_seconds": run_wall_seconds(self),
            "budget_spent": dict(self.budget_spent),
            "sampler": list(self.sampler),
            "best_score": self.best_score,
            "best_step": self.best_step,
            "best_scores": self.best_scores,
            "peak_memory_bytes": self.peak_memory_bytes,
            "train_peak_memory_bytes": self.train_peak_memory_bytes,
            "rng": rng_states(),
        }

    @classmethod
    def from_json(cls, info: dict) -> TrainState:
        """The state a checkpoint saved; restores the random states it recorded."""
        set_rng_states(info["rng"])
        return cls(
            step=info["step"],
            examples=info["examples"],
            tokens=info["tokens"],
            flops=info["flops"],
            seconds=info["seconds"],
            eval_seconds=info.get("eval_seconds", 0.0),  # checkpoints of older releases lack the two
            wall_seconds=info.get("wall_seconds", 0.0),
            budget_spent=dict(info["budget_spent"]),
            sampler=tuple(info["sampler"]),
            best_score=info["best_score"],
            best_step=info["best_step"],
            best_scores=info["best_scores"],
            peak_memory_bytes=info.get("peak_memory_bytes", 0),
            train_peak_memory_bytes=info.get("train_peak_memory_bytes", 0),
        )

    def record(self) -> dict:
        """The counters every metrics.jsonl line starts with."""
        return {
            "step": self.step,
            "examples": self.examples,
            "tokens": self.tokens,
            "flops": self.flops,
            "seconds": round(self.seconds, 3),
        }


def run_wall_seconds(state: TrainState) -> float:
    """The run's wall time so far: earlier processes (up to their last checkpoint) plus this one since
    it started (interpreter start and imports included: they are part of what a run costs)."""
    return state.wall_seconds + time.time() - PROCESS_START


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict:
    """Python, NumPy and torch random states as JSON-able lists (checkpoints hold no pickles)."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_states(states: dict) -> None:
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))
