"""models.json: the index of a several-model comparison folder (compare's `models: [...]`).

Such a folder holds one single-model comparison folder per model, named after it, and this index
saying which sub-folder is which model, in the experiment's order. `peftlab report` reads it to draw
every model's leaderboard and the cross-model table from the sub-folders' runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from peftlab.errors import PeftlabError
from peftlab.rundir.runio import atomic_write_text, inside

INDEX = "models.json"


def write_index(folder: Path, models: list[tuple[str, str]]) -> None:
    """``models``: (model name, sub-folder) per model, in the experiment's order."""
    folder.mkdir(parents=True, exist_ok=True)
    body = {"models": [{"model": name, "folder": sub} for name, sub in models]}
    atomic_write_text(folder / INDEX, json.dumps(body, indent=2) + "\n")


def read_index(folder: Path) -> list[tuple[str, Path]] | None:
    """(model name, sub-folder path) per model; None when ``folder`` is not a several-model comparison."""
    path = Path(folder) / INDEX
    if not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["models"]
        out = [(str(e["model"]), inside(folder, Path(folder) / str(e["folder"]), INDEX)) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PeftlabError(
            f"{path}: not a readable index of models ({type(e).__name__}: {e}); expected "
            '{"models": [{"model": NAME, "folder": SUB-FOLDER}, ...]} as peftlab compare writes it'
        ) from None
    return out
