"""Each method's learning rate chosen on validation: compare's ``lr_grid`` (one method) and
``lr_factors`` (every training method, as multiples of its own learning rate).

A fair comparison gives every method its best learning rate, not one tuned for one side. For a
method with a grid, ``compare`` first trains one run per grid value (the first seed, the
comparison's full per-run budget each) in ``<comparison>/lr_search/``, picks the value with the
best validation score (the test split is never looked at), then trains the method's seeds at that
value. Search runs are ordinary run folders: rerunning compare skips or resumes them, and the
report lists them with their cost, which is reported beside the leaderboard, not inside it.
"""

from __future__ import annotations

import copy
from pathlib import Path

from peftlab.config import load_config
from peftlab.errors import PeftlabError
from peftlab.lr_choice import SEARCH_DIR, search_name
from peftlab.methods import get_method, method_options


def check_grid(value: object, where: str) -> list[float]:
    """An lr_grid as given in the experiment: a non-empty list of positive numbers, sorted."""
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    if not ok or any(v <= 0 for v in value):
        raise PeftlabError(
            f"{where}: lr_grid must be a list of positive learning rates, e.g. [1.0e-4, 3.0e-4], got {value!r}"
        )
    return sorted({float(v) for v in value})


def base_lr(raw: dict) -> float:
    """The learning rate a run config trains at: train.lr, else its method's default for its options."""
    cfg = load_config(None, base=copy.deepcopy(raw))
    return cfg.train.lr if cfg.train.lr is not None else get_method(cfg.method.name).lr(method_options(cfg.method))


def grids(entries: list[tuple[str, dict, dict]], lr_factors: list[float] | None, source: str) -> dict[str, list[float]]:
    """label -> the learning rates to try, for each (label, entry, first run config) that has a grid."""
    out = {}
    for label, entry, raw in entries:
        where = f"{source}: method {label}"
        if "lr_grid" in entry:
            if (entry.get("train") or {}).get("lr") is not None:
                raise PeftlabError(f"{where}: give lr_grid or train.lr, not both")
            values = check_grid(entry["lr_grid"], where)
        elif lr_factors:
            values = sorted({base_lr(raw) * f for f in lr_factors})
        else:
            continue
        if not get_method(raw["method"]["name"]).trains:
            if "lr_grid" in entry:
                raise PeftlabError(f"{where}: lr_grid needs a method that trains ({raw['method']['name']} does not)")
            continue
        out[label] = values
    return out


def search_configs(raw: dict, lrs: list[float], folder: Path) -> list[dict]:
    """One run config per learning rate: the label's first-seed config at that lr, in lr_search/."""
    out = []
    for lr in lrs:
        run = copy.deepcopy(raw)
        run["name"] = search_name(raw["label"], lr)
        run["output_dir"] = str(folder / SEARCH_DIR)
        run["train"] = {**run["train"], "lr": lr}
        out.append(run)
    return out
