"""Disks that are full, read-only or not folders: found before anything trains where that can be
known, and a write that fails later stops the run with a message naming the file and the free space,
never a traceback (the last checkpoint stays intact: checkpoint.py writes beside it and renames).

What a run writes, for the check before training: two checkpoints (checkpoint.py keeps the newest
and the one before it), each 4 fp32 copies of the trainable parameters (weights, best weights, AdamW's
two moments); the adapter (one more copy); predictions.csv; metrics.jsonl and the small JSON files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from peftlab.errors import PeftlabError
from peftlab.humanize import human_bytes

# Errors that mean "this disk cannot take the write", whatever the file.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
CHECKPOINTS_KEPT = 2
FP32_COPIES_PER_CHECKPOINT = 4  # the trainable weights, AdamW's two moments, the best weights
MARGIN = 1.2  # estimates of text sizes, file system blocks, the optimizer's step counters
SMALL_FILES = 16 << 20  # metrics.jsonl, summary.json, config.yaml, a validation's predictions


def run_bytes(trainable: int, prediction_bytes: int = 0) -> int:
    """What a run of ``trainable`` parameters writes at most at one time, with a margin."""
    # + the adapter, + the run folder's best.safetensors (the best weights on validation, kept on disk)
    copies = CHECKPOINTS_KEPT * FP32_COPIES_PER_CHECKPOINT + 2
    return int(MARGIN * (4 * trainable * copies + prediction_bytes)) + SMALL_FILES


def prediction_bytes(examples, max_new_tokens: int) -> int:
    """predictions.csv's size, roughly: each example's prompt and references, and a generated answer
    of at most ``max_new_tokens`` tokens (4 bytes each)."""
    return sum(len(e.prompt) + sum(map(len, e.references)) + 4 * max_new_tokens + 16 for e in examples)


def check_free_space(run_dir: Path, need: int, free: int | None = None) -> None:
    """Refuse to start a run that could not write what it will write. ``free``: the disk's free bytes
    (measured when not given)."""
    free = shutil.disk_usage(run_dir).free if free is None else free
    if free < need:
        raise PeftlabError(
            f"{run_dir}: {free / 1e9:.2f} GB free but checkpoints and the adapter need about "
            f"{need / 1e9:.2f} GB ({CHECKPOINTS_KEPT} checkpoints, the adapter and predictions, with a margin); "
            "free disk space or set output_dir elsewhere"
        )


def ensure_writable_dir(path: Path, key: str) -> Path:
    """Create ``path`` (and its parents) and check that a file can be written in it; PeftlabError
    naming the config ``key`` and the path otherwise (a file in the way, a read-only mount, no space)."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise PeftlabError(f"{key}: {blocker} is a file, not a folder; set {key} to a folder (or move the file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PeftlabError(
            f"{key}: cannot write {path}: {e.strerror or e}; set {key} to a folder you can write to"
        ) from None
    return path


def disk_errno(exc: BaseException) -> int | None:
    """The OS error number of a failed write, also from safetensors, which reports it only in words
    ("... (os error 28)"); None when ``exc`` is no write failure of the disk."""
    if isinstance(exc, OSError):
        return exc.errno if exc.errno in DISK_ERRNOS else None
    if type(exc).__name__ == "SafetensorError":
        found = re.search(r"os error (\d+)", str(exc))
        code = int(found.group(1)) if found else None
        return code if code in DISK_ERRNOS else None
    return None


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Name ``path`` on a disk error raised without a file name (file.write, safetensors)."""
    try:
        yield
    except Exception as e:
        code = disk_errno(e)
        if code is None or getattr(e, "filename", None):
            raise
        raise OSError(code, os.strerror(code), str(path)) from e


@contextlib.contextmanager
def stop_on_disk_errors(run_dir: Path, saved_step) -> Iterator[None]:
    """A write the disk refused mid-run becomes a PeftlabError (exit 2) naming the file, the free space
    and how to go on. ``saved_step(run_dir)``: the step of the intact checkpoint, or None."""
    try:
        yield
    except Exception as e:
        code = disk_errno(e)
        if code is None:
            raise
        raise PeftlabError(disk_message(Path(run_dir), e, code, saved_step(run_dir))) from None


def disk_message(run_dir: Path, exc: BaseException, code: int, step: int | None) -> str:
    where = getattr(exc, "filename", None) or f"a file in {run_dir}"
    try:
        free = f"{human_bytes(shutil.disk_usage(run_dir).free)} free on that disk"
    except OSError:
        free = "free space unknown"
    if step is None:
        then = "no checkpoint was saved yet: free disk space, then run the same `peftlab train` command again"
    else:
        then = (
            f"the checkpoint at step {step} is intact: free disk space (or move the run folder), then "
            f"continue with  peftlab train --resume {run_dir}"
        )
    return f"cannot write {where}: {os.strerror(code)} ({free}); the run stopped; {then}"
