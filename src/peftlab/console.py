"""Terminal output: one rich console, and progress that shows wherever the output goes.

On a terminal, ``progress()`` is a rich bar with ETA. Elsewhere (nohup, a Slurm or Ray log, CI) a bar
cannot redraw, so rich prints it only when the phase ends: a 16-minute zero-shot test wrote nothing to
its log until it finished. There ``progress()`` is a ``LogProgress``: the same calls, printed as a
plain line per phase (phase, done/total, rate, elapsed, ETA) at least every ``PEFTLAB_PROGRESS_SECONDS``
(default 30) while it runs, and once when it ends.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)
if not console.is_terminal:
    # Logs (CI, files) have no width to measure: 100 columns keeps tables and paths unwrapped.
    console = Console(stderr=True, highlight=False, width=100)

PROGRESS_SECONDS_ENV = "PEFTLAB_PROGRESS_SECONDS"


def progress() -> Progress | LogProgress:
    if not console.is_terminal:
        return LogProgress(console, _interval())
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _interval() -> float:
    raw = os.environ.get(PROGRESS_SECONDS_ENV, "30")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise SystemExit(f"{PROGRESS_SECONDS_ENV}={raw!r}: give the seconds between progress lines, e.g. 30") from None


@dataclass
class _Phase:
    description: str
    total: float | None
    completed: float
    info: str
    started: float
    printed: float  # when its last line was printed
    done: bool = False
    first: float = field(default=0.0)  # `completed` at the start: a resumed phase's rate counts only new work


class LogProgress:
    """rich.progress.Progress's calls that peftlab uses (add_task, update, advance, remove_task, with),
    written as plain lines for a log. A line is due when a phase has run ``interval`` seconds since its
    last one; a background thread checks every second, so a line comes even while one long batch runs."""

    def __init__(self, out: Console, interval: float, clock=time.monotonic):
        self.out, self.interval, self.clock = out, interval, clock
        self.phases: dict[int, _Phase] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LogProgress:
        self._thread = threading.Thread(target=self._beat, name="peftlab-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for tid in list(self.phases):  # a phase stopped early (budget, Ctrl-C) still says where it got
            self._finish(tid)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, info: str = "", **_) -> int:
        now = self.clock()
        with self._lock:
            tid = self._next_id  # never reused, as rich's task ids
            self._next_id += 1
            self.phases[tid] = _Phase(description, total, completed, info, now, now, first=completed)
        return tid

    def update(self, tid: int, completed: float | None = None, advance: float = 0, info: str | None = None, **_):
        with self._lock:
            phase = self.phases[tid]
            phase.completed = (phase.completed if completed is None else completed) + advance
            phase.info = phase.info if info is None else info
            finished = phase.total is not None and phase.completed >= phase.total
        if finished:
            self._finish(tid)
        else:
            self.tick()

    def advance(self, tid: int, advance: float = 1) -> None:
        self.update(tid, advance=advance)

    def remove_task(self, tid: int) -> None:
        self._finish(tid)
        with self._lock:
            self.phases.pop(tid, None)

    def tick(self, now: float | None = None) -> None:
        """Print a line for each running phase whose last one is ``interval`` seconds old."""
        now = self.clock() if now is None else now
        with self._lock:
            due = [p for p in self.phases.values() if not p.done and now - p.printed >= self.interval]
            for p in due:
                p.printed = now
        for p in due:
            self.out.print(line(p, now), markup=False, highlight=False)

    def _finish(self, tid: int) -> None:
        with self._lock:
            phase = self.phases.get(tid)
            if phase is None or phase.done:
                return
            phase.done = True
        self.out.print(line(phase, self.clock()), markup=False, highlight=False)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval) or 0.1):  # an interval of 0: a line at every update
            self.tick()


def line(p: _Phase, now: float) -> str:
    """'train: 37/100 (step 12 loss 1.2345), 0.52/s, elapsed 1:10, eta 2:01'."""
    elapsed = max(now - p.started, 0.0)
    rate = (p.completed - p.first) / elapsed if elapsed > 0 else 0.0
    of = f"/{p.total:.4g}" if p.total is not None else ""
    text = f"{p.description}: {p.completed:.4g}{of}"
    text += f" ({p.info})" if p.info else ""
    text += f", {rate:.3g}/s, elapsed {_clock(elapsed)}"
    if p.done:
        return text + ", done" if p.total is None or p.completed >= p.total else text + ", stopped"
    if p.total is not None and rate > 0:
        text += f", eta {_clock((p.total - p.completed) / rate)}"
    return text


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
