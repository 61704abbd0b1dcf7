"""The local launcher: a process pool on this machine (the default; no extra dependency).

``parallel`` runs at most N training commands at once. ``devices`` ("0,1,2,3") are slots: each run
gets its own ``CUDA_VISIBLE_DEVICES`` (a run of k processes takes k slots and runs under
`accelerate launch`); without devices each run takes one of N anonymous slots and sees every GPU.
On CPU, concurrent runs split the CPU threads between them. With N = 1 and no devices the runs go
one after another with their output on this terminal, as they always have; with N > 1 each run's
output goes to train.log in its folder and this terminal shows one line per start and end.

Ctrl-C (or SIGTERM) on the driver sends SIGTERM to every running child, which saves a checkpoint
at the end of its step and exits; a driver killed outright (SIGKILL) has the kernel send it
(PR_SET_PDEATHSIG). The next `compare` resumes them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from peftlab.comparison.launch.job import Job, Outcome, cpu_threads, launch_env, outcome
from peftlab.console import console
from peftlab.errors import PeftlabError

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_GRACE_S = 300  # how long a stopped child may take to write its checkpoint


@dataclass
class Running:
    job: Job
    process: subprocess.Popen
    slots: list[str]
    log: IO | None
    started: float = field(default_factory=time.perf_counter)


class LocalLauncher:
    name = "local"

    def __init__(self, parallel: int = 1, devices: list[str] | None = None):
        if parallel < 1:
            raise PeftlabError(f"--parallel must be at least 1, got {parallel}")
        self.devices = list(devices or [])
        self.parallel = parallel
        self.slots = self.devices or [str(i) for i in range(parallel)]

    def check(self, jobs: list[Job]) -> None:
        for job in jobs:
            if job.processes > len(self.slots):
                raise PeftlabError(
                    f"{job.name} needs {job.processes} slots (processes: {job.processes}) but the launcher has "
                    f"{len(self.slots)}; give more --devices or a larger --parallel"
                )

    def run(self, jobs: list[Job]) -> list[Outcome]:
        self.check(jobs)
        pending, running, free, done = deque(jobs), [], list(self.slots), []
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a killed driver stops its children too
        try:
            while pending or running:
                while pending and len(running) < self.parallel and pending[0].processes <= len(free):
                    taken, free = free[: pending[0].processes], free[pending[0].processes :]
                    running.append(self.start(pending.popleft(), taken))
                time.sleep(0.2)
                for r in [r for r in running if r.process.poll() is not None]:
                    running.remove(r)
                    free = sorted(free + r.slots, key=self.slots.index)  # lowest device ids first
                    done.append(self.finish(r))
        except KeyboardInterrupt:
            stop(running)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return done

    @property
    def quiet(self) -> bool:
        """Several runs at once: their output goes to log files, not interleaved on the terminal."""
        return self.parallel > 1

    def start(self, job: Job, slots: list[str]) -> Running:
        env = {**os.environ, **launch_env(self.name, ",".join(slots), self.parallel)}
        if self.devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slots)
        if self.parallel > 1:  # CPU threads shared between concurrent runs (GPU runs hardly use them)
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = cpu_threads(self.parallel)
        log = None
        if self.quiet:
            job.run_dir.mkdir(parents=True, exist_ok=True)
            log = open(job.files.log, "a", encoding="utf-8")  # noqa: SIM115 (closed in finish)
            where = f" on {'device' if self.devices else 'slot'} {','.join(slots)}"
            console.print(f"[dim]start[/dim] {job.name}{where} (output: {job.files.log})")
        else:
            console.rule(job.name)
        process = subprocess.Popen(job.command(), env=env, stdout=log, stderr=log, preexec_fn=_child_setup)
        return Running(job, process, slots, log)

    def finish(self, r: Running) -> Outcome:
        if r.log:
            r.log.close()
        result = outcome(r.job, r.process.returncode, Path(r.log.name) if r.log else None)
        seconds = time.perf_counter() - r.started
        colour = {"finished": "green", "skipped": "yellow", "failed": "red"}[result.status]
        console.print(f"[{colour}]{result.status}[/{colour}] {r.job.name} ({seconds:.0f} s) {result.detail}".rstrip())
        return result


def stop(running: list[Running]) -> None:
    """SIGTERM to every child, then wait for their checkpoints (a second Ctrl-C stops waiting)."""
    for r in running:
        if r.process.poll() is None:
            r.process.send_signal(signal.SIGTERM)
    if running:
        console.print(f"stopping {len(running)} run(s): each saves a checkpoint; rerun the command to resume")
    deadline = time.monotonic() + STOP_GRACE_S
    for r in running:
        try:
            r.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            r.process.kill()
        if r.log:
            r.log.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _child_setup() -> None:
    """In the child before it runs: its own session, so Ctrl-C reaches the driver only (which stops the
    children with SIGTERM, once); and SIGTERM when the driver dies, even by SIGKILL, so a killed driver
    leaves checkpoints to resume instead of orphans that hold their run folders' locks (Linux prctl)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the driver died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
