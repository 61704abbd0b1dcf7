"""What a training run has done so far: the counters a checkpoint saves and ``--resume`` restores.

The counters (steps, examples, tokens, FLOPs, seconds) live here and only here: the budget
(budget.py) reads what has been spent from the run's TrainState rather than keeping a copy, so the
two can never disagree, after a resume either.

A checkpoint is safetensors (weights, optimizer, best weights) plus this state as JSON
(checkpoint.py; the best weights live in a file, never in this state); ``to_json`` / ``from_json``
are its only writer and reader. Random states are stored as JSON lists, so loading a checkpoint
unpickles nothing.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

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
            "sampler": list(self.sampler),
            "best_score": self.best_score,
            "best_step": self.best_step,
            "best_scores": self.best_scores,
            "peak_memory_bytes": self.peak_memory_bytes,
            "train_peak_memory_bytes": self.train_peak_memory_bytes,
            "rng": rng_states(),
        }

    def restore(self, info: dict) -> None:
        """Become the state a checkpoint saved (``to_json``'s dict), in place: the budget holds this
        object and reads the restored counters. Restores the random states it recorded. A checkpoint
        of an older release also holds budget_spent, a copy of these counters, not read."""
        set_rng_states(info["rng"])
        self.step, self.examples, self.tokens = info["step"], info["examples"], info["tokens"]
        self.flops, self.seconds = info["flops"], info["seconds"]
        self.eval_seconds = info.get("eval_seconds", 0.0)  # checkpoints of older releases lack the two
        self.wall_seconds = info.get("wall_seconds", 0.0)
        self.sampler = tuple(info["sampler"])
        self.best_score, self.best_step, self.best_scores = info["best_score"], info["best_step"], info["best_scores"]
        self.peak_memory_bytes = info.get("peak_memory_bytes", 0)
        self.train_peak_memory_bytes = info.get("train_peak_memory_bytes", 0)

    def count_step(self, cost: Mapping[str, float], seconds: float = 0.0) -> None:
        """One optimizer step done: ``cost`` is what it spent (the loop's step_cost: examples, tokens,
        flops; a kind left out spent nothing), ``seconds`` how long it took."""
        self.step += 1
        self.examples += cost.get("examples", 0)
        self.tokens += cost.get("tokens", 0)
        self.flops += cost.get("flops", 0)
        self.seconds += seconds

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
