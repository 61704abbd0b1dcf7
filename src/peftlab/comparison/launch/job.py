"""The unit of work every launcher runs: one run's training command and its run folder.

A job is `python -m peftlab train CONFIG --resume` (under `accelerate launch` when the run spans
several processes). The run folder is its only state, so any launcher gets skip and resume for
free: rerunning a comparison re-plans from the folders. What a launcher tells the run about where
it ran travels in environment variables and lands in summary.json (``launch_env``, ``LaunchInfo``).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from peftlab.rundir.folder import RunDir
from peftlab.rundir.runlock import LOCKED_EXIT, holder

# What the launcher tells the run (read by summarize.launch_info into summary.json's `launch`).
ENV_LAUNCHER, ENV_SLOT, ENV_CONCURRENCY, ENV_JOB_ID = (
    "PEFTLAB_LAUNCHER",
    "PEFTLAB_SLOT",
    "PEFTLAB_CONCURRENCY",
    "PEFTLAB_JOB_ID",
)


@dataclass(frozen=True)
class Job:
    name: str  # the run's name
    config: Path  # its run config (written by compare into <comparison>/configs)
    run_dir: Path
    processes: int = 1  # processes per run (one GPU each); > 1 runs under `accelerate launch`
    overwrite: bool = False
    argv: tuple[str, ...] | None = None  # another command instead of training (the launchers' tests)
    trust_remote_code: bool = False  # the run's model code may run: compare was given --trust-remote-code

    @property
    def files(self) -> RunDir:
        """The run folder's files (its train.log, where the launchers copy the trainer's output)."""
        return RunDir(self.run_dir)

    def command(self) -> list[str]:
        if self.argv:
            return list(self.argv)
        train = ["-m", "peftlab", "train", str(self.config), "--resume"] + (["--overwrite"] if self.overwrite else [])
        train += ["--trust-remote-code"] if self.trust_remote_code else []
        if self.processes == 1:
            return [sys.executable, *train]
        accelerate = ["-m", "accelerate.commands.launch", "--num_processes", str(self.processes)]
        accelerate += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        accelerate += ["--main_process_port", str(free_port())]  # concurrent runs each need their own port
        return [sys.executable, *accelerate, "--multi_gpu", *train]


@dataclass(frozen=True)
class Outcome:
    name: str
    status: Literal["finished", "failed", "skipped"]
    detail: str = ""  # why it failed or was skipped


def outcome(job: Job, returncode: int, log: Path | None = None) -> Outcome:
    """A finished training command's exit code in words (75: another trainer holds the run folder)."""
    if returncode == 0:
        return Outcome(job.name, "finished")
    if returncode == LOCKED_EXIT and job.files.finished:
        return Outcome(job.name, "skipped", "finished by another trainer meanwhile")
    if returncode == LOCKED_EXIT:
        return Outcome(job.name, "skipped", f"being trained by {holder(job.run_dir)}")
    where = f"; its output: {log}" if log else ""
    return Outcome(job.name, "failed", f"exit code {returncode}{where} (rerun alone: {' '.join(job.command())})")


def launch_env(launcher: str, slot: str | None, concurrency: int, job_id: str | None = None) -> dict[str, str]:
    env = {ENV_LAUNCHER: launcher, ENV_CONCURRENCY: str(concurrency)}
    if slot is not None:
        env[ENV_SLOT] = slot
    if job_id is not None:
        env[ENV_JOB_ID] = job_id
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_threads(concurrency: int) -> str:
    """Threads per run when ``concurrency`` runs share this machine's CPUs (at least one)."""
    return str(max(1, len(os.sched_getaffinity(0)) // max(1, concurrency)))


class Launcher(Protocol):
    """Runs jobs to completion (or skips those another trainer holds) and says how each ended."""

    name: str

    def run(self, jobs: list[Job]) -> list[Outcome]: ...
