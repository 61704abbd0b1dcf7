"""Cost accounting: parameter counts, adapter bytes, peak memory, wall time."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import torch


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


class PeakMemory:
    """Peak memory inside a ``with`` block (``peak``), and inside its optimizer steps (``train_peak``).

    The training peak is the method's cost: what its optimizer steps hold. The whole-run peak also
    holds peftlab's bookkeeping (the best-weights copy, checkpoint writes, evaluation), which is not
    the method's and would charge full fine-tuning 1-3 extra model copies. A run without optimizer
    steps (zero-shot) records as training peak the memory of the loaded model (``floor``).

    On CUDA: ``torch.cuda.max_memory_allocated``, reset at each step's start (the whole-run peak folds
    in every value read). On CPU: the process's resident set size sampled every ``interval`` seconds
    by a background thread (``ru_maxrss`` only ever grows, so it cannot give the peak of one phase),
    and at each step's start and end. The sampler sleeps between reads, so it costs the timed
    training path almost nothing.
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.cuda = torch.cuda.is_available()
        self.peak = 0
        self.train_peak = 0
        self._in_step = False
        self._stop = threading.Event()

    def _read(self) -> int:
        return torch.cuda.max_memory_allocated() if self.cuda else psutil.Process().memory_info().rss

    def _note(self, value: int) -> None:
        self.peak = max(self.peak, value)
        if self._in_step:
            self.train_peak = max(self.train_peak, value)

    @contextmanager
    def step(self):
        """Marks one optimizer step: its peak is training memory."""
        if self.cuda:
            self._note(self._read())  # the whole run's peak so far, before the reset forgets it
            torch.cuda.reset_peak_memory_stats()
        self._in_step = True
        self._note(self._read())
        try:
            yield
        finally:
            self._note(self._read())
            self._in_step = False

    def floor(self) -> None:
        """For a run without optimizer steps: the training peak is the memory it holds now."""
        self._in_step = True
        self._note(psutil.Process().memory_info().rss if not self.cuda else torch.cuda.memory_allocated())
        self._in_step = False

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.cuda else "cpu_peak_rss"

    def _sample(self):
        proc = psutil.Process()
        while not self._stop.is_set():
            self._note(proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self.peak = psutil.Process().memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self._note(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, psutil.Process().memory_info().rss)


class Stopwatch:
    """Accumulates wall time of the blocks it wraps (training steps only, not evaluation)."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self._t0
