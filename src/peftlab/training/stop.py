"""Stopping a run cleanly: a signal asks for a stop at the end of the current step, so the run can
save a checkpoint first."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """SIGTERM / SIGINT during training ask for a stop at the end of the current step, so the run can
    save a checkpoint first (a second signal stops at once)."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # asked twice: stop now
            signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
