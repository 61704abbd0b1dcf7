"""One trainer per run folder: ``lock.json`` inside the folder, held with an OS file lock.

Two `peftlab compare` drivers of one experiment, a Slurm requeue that starts while the old job is
still stopping, or a user typing `peftlab train --resume` beside a running grid would otherwise
train one folder at once and interleave its metrics.jsonl. The trainer takes the lock before it
touches the folder; a second one finds it held, says who holds it and exits with LOCKED_EXIT
(launchers report that run as skipped, not failed).

The lock is ``flock`` on the file, not the file's existence: the kernel releases it when the
holder exits, however it dies (SIGKILL, OOM), so a lock is never stale on one machine. On a shared
file system (NFS v4, Lustre) flock is carried by the server's byte-range locks, and a crashed
node's lock expires with its lease (about 90 s on NFS v4): that lease is the staleness timeout.
The file's JSON (host, pid, Slurm or Ray job id, start time) is only there to name the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from peftlab.errors import PeftlabError
from peftlab.rundir.folder import RunDir

LOCKED_EXIT = 75  # EX_TEMPFAIL: the run is being trained elsewhere; try again later


class RunLocked(PeftlabError):
    exit_code = LOCKED_EXIT


def job_id() -> str | None:
    """The scheduler's id of this job, where there is one (Slurm array task, Ray task, launcher slot)."""
    if os.environ.get("SLURM_JOB_ID"):
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm:{os.environ.get('SLURM_ARRAY_JOB_ID', os.environ['SLURM_JOB_ID'])}" + (
            f"_{task}" if task else ""
        )
    return os.environ.get("PEFTLAB_JOB_ID")


def holder(run_dir: Path) -> str:
    """Who holds the lock, in words (from the file; 'another process' when it cannot be read)."""
    try:
        info = json.loads(RunDir(run_dir).lock.read_text(encoding="utf-8"))
        job = f", job {info['job_id']}" if info.get("job_id") else ""
        return f"host {info['host']} pid {info['pid']}{job} since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class RunLock:
    """``with RunLock(run_dir):`` hold the folder's lock, or raise RunLocked naming its holder."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(RunDir(self.run_dir).lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise PeftlabError(
                f"cannot write the run folder {self.run_dir}: {e.strerror or e} (check output_dir and free disk space)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(
                f"{self.run_dir} is being trained by {holder(self.run_dir)}; not training it twice at once "
                f"(skipped; rerun when that finishes, or stop it first)"
            ) from None
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "job_id": job_id(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the flock; the file stays (removing it would race a new holder)
            self.fd = None
