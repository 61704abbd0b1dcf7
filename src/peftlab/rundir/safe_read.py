"""Reading what a run wrote, with a message when a file is damaged: which file, what is wrong with it
and what to do, instead of the reader library's traceback. Nothing here unpickles: a pickle found
where safetensors belong is named as such and refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from peftlab.errors import PeftlabError
from peftlab.rundir.folder import RunDir


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a .safetensors file in words, or None when its header and size are sound.
    Cheap: reads the header only (safetensors checks that the header's tensors cover the file)."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
        return None
    except (SafetensorError, OSError) as e:
        return _describe(path, e)


def _describe(path: Path, err: Exception) -> str:
    with path.open("rb") as f:
        head = f.read(4)
    size = path.stat().st_size
    if head.startswith(b"PK\x03\x04"):
        return "a torch.save zip/pickle file, not safetensors (not loaded: unpickling can run code)"
    if head[:1] == b"\x80":
        return "a Python pickle, not safetensors (not loaded: unpickling can run code)"
    if "not fully covered" in str(err) or "too small" in str(err) or "invalid header length" in str(err):
        return f"truncated ({size} bytes, shorter than its header says; a write cut short or a partial copy)"
    return f"not a valid safetensors file ({size} bytes; {err})"


def read_json(path: Path) -> tuple[object | None, str | None]:
    """(the parsed JSON, None), or (None, what is wrong in words)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, "missing"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, f"not valid JSON ({e}; truncated or damaged)"
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_adapter(folder: Path, run_dir: Path) -> None:
    """Every safetensors and JSON file of a run's adapter/ folder is readable, before the base model
    is loaded; PeftlabError naming the first damaged file and how to get a sound adapter back."""
    for path in sorted(Path(folder).iterdir()):
        if path.suffix == ".safetensors":
            problem = safetensors_problem(path)
        elif path.suffix == ".json":
            problem = read_json(path)[1]
        else:
            continue
        if problem:
            raise PeftlabError(
                f"{path}: {problem}. The adapter cannot be used: restore this file from a copy, or train "
                f"the run again with  peftlab train --overwrite {RunDir(run_dir).config}"
            )
