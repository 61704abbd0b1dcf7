"""The LoRA run both resume tests train: dropout on, so resuming must also restore the RNG."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_config(tmp_path: Path, copy_task: dict, name: str, train: dict, eval: dict) -> Path:
    cfg = {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "seed": 3,
        "model": {"name": "tiny-llama"},
        # dropout draws random numbers every step: resuming must restore the RNG to match exactly
        "method": {"name": "lora", "rank": 4, "dropout": 0.1},
        "task": copy_task,
        "train": train,
        "eval": eval,
        "trackers": [],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
