"""Cost accounting: parameter counts, adapter bytes, peak memory, wall time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import torch


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


class PeakMemory:
    """Peak memory inside a ``with`` block.

    On CUDA: ``torch.cuda.max_memory_allocated``. On CPU: the process's resident set size sampled
    every ``interval`` seconds by a background thread (``ru_maxrss`` only ever grows, so it
    cannot give the peak of one phase). The sampler sleeps between reads, so it costs the timed
    training path almost nothing.
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.cuda = torch.cuda.is_available()
        self.peak = 0
        self._stop = threading.Event()

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.cuda else "cpu_peak_rss"

    def _sample(self):
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
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
            self.peak = torch.cuda.max_memory_allocated()
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
