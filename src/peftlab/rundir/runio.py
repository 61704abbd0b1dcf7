"""Writing and reading a run folder's files so that a crash never leaves half a file (what the
files are and their names: folder.py).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from peftlab.errors import PeftlabError, suggest
from peftlab.rundir.folder import RunDir

# Several references of one example share a predictions.csv cell, joined by this (it cannot occur
# in one line of text).
REFERENCE_SEPARATOR = " ||| "


# What a folder name peftlab makes from the user's words may be: no separators, no leading dot (so
# neither '..' nor a hidden name), so that it is one folder below output_dir.
PLAIN_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
PLAIN_WORDS = "a plain folder name (letters, digits, . _ + -; no slashes, not starting with '.')"


def inside(root: str | Path, path: str | Path, what: str) -> Path:
    """``path``, when it lies strictly below ``root`` once both are resolved (symlinks and '..' followed);
    else a PeftlabError naming ``what`` (the file and key it came from). Every folder or file peftlab
    derives from a name in a config goes through this before anything is written there: the config's
    own validators refuse odd names first, and this catches whatever a future path-building change lets by."""
    base, full = Path(root).resolve(), Path(path).resolve()
    if full == base or not full.is_relative_to(base):
        raise PeftlabError(f"{what}: {path} leaves output_dir '{root}'; use {PLAIN_WORDS}")
    return Path(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_sqlite(path: Path, fill) -> Path:
    """Build a SQLite file with ``fill(connection)`` beside ``path`` and rename it into place, so
    concurrent runs or a crash never leave a half-written database where readers look for it."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            fill(conn)
            conn.commit()
        finally:
            conn.close()
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def finished_with_config(run_dir: Path, matches: Callable[[str], bool]) -> tuple[bool, bool]:
    """(the run folder holds a finished run, ``matches(the text of its config.yaml)``)."""
    folder = RunDir(run_dir)
    same = folder.config.is_file() and matches(folder.config.read_text(encoding="utf-8"))
    return folder.finished, same


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: Path, record: dict) -> None:
    # One write() call per line, so a reader never sees a partial record from this process.
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line. A last line without its newline is a write cut short by a kill: it is
    dropped (a resumed run rewrites the file from its checkpoint), not an error; a complete line that
    is not JSON is an error naming the file and line."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    complete = text.split("\n")[:-1]  # the part after the last newline is '' or a torn line
    out = []
    for n, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise PeftlabError(f"{path}, line {n}: not valid JSON ({e})") from None
    return out


def read_predictions_csv(path: Path, required: tuple[str, ...] = ("id", "reference", "prediction")) -> list[dict]:
    """The rows of a predictions.csv (see write_predictions) as dicts; PeftlabError naming the file,
    line and problem. Several references in one cell are split with REFERENCE_SEPARATOR by the caller."""
    path = Path(path)
    if not path.is_file():
        raise PeftlabError(f"{path}: no such file")
    # Inputs such as whole dialogues or database schemas can exceed csv's 128 KB field default.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    rows = []
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, strict=True)
            header = reader.fieldnames
            if not header:
                raise PeftlabError(f"{path}: file is empty (expected a header: id,input,reference,prediction)")
            for col in required:
                if col not in header:
                    raise PeftlabError(
                        f"{path}: missing column '{col}'{suggest(col, header)} (header is: {','.join(header)})"
                    )
            for row in reader:
                if None in row or any(row[c] is None for c in header):
                    n = len(row.get(None, [])) + sum(row[c] is not None for c in header)
                    raise PeftlabError(f"{path}: line {reader.line_num}: {n} fields, expected {len(header)}")
                rows.append(row)
    except csv.Error as e:
        raise PeftlabError(f"{path}: line {reader.line_num}: malformed CSV ({e})") from None
    except UnicodeDecodeError as e:
        raise PeftlabError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return rows


def write_predictions(path: Path, examples, predictions: list[str], scores: list[float] | None = None) -> None:
    """id, input, reference, prediction and, when given, the example's own primary-metric score
    (what the report's paired bootstrap resamples)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "input", "reference", "prediction"] + (["score"] if scores is not None else []))
    for i, (ex, pred) in enumerate(zip(examples, predictions)):
        row = [ex.id, ex.prompt, REFERENCE_SEPARATOR.join(ex.references), pred]
        w.writerow(row + ([f"{scores[i]:.6g}"] if scores is not None else []))
    atomic_write_text(path, buf.getvalue())


def cpu_name() -> str | None:
    """The CPU's model name (platform.processor() is empty or just 'x86_64' on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment() -> dict:
    """Package versions and hardware, recorded in every summary."""
    import importlib.metadata as md

    import psutil
    import torch

    versions = {}
    # local: versions imports importlib.metadata (~0.2 s); runio stays light for report and score
    from peftlab.versions import untested

    for pkg in (
        "peftlab",
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "safetensors",
        "tokenizers",
        "datasets",
        "rouge-score",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    hw = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_bytes": psutil.virtual_memory().total,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    # The tested releases of what differed (empty: the run used the tested torch/transformers/peft).
    differ = {pkg: tested for pkg, (_, tested) in untested().items()}
    return {"python": platform.python_version(), "versions": versions, "untested_versions": differ, "hardware": hw}
