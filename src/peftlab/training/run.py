"""One run: its config, its folder and its processes, and the metrics log every part of training
writes to. A module of its own so that the parts of the training loop (run_model, validation,
summarize, comparison/rung) can take a ``Run`` without importing train.py, which imports them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, InitProcessGroupKwargs

from peftlab.config import ExperimentConfig, dump_config
from peftlab.console import console
from peftlab.rundir.diskspace import writing
from peftlab.rundir.folder import RunDir
from peftlab.rundir.runio import append_jsonl, atomic_write_text
from peftlab.training import checkpoint
from peftlab.training.runstart import prepare_run_dir


@dataclass
class Run:
    """One run's config, folder and processes. Under `accelerate launch --num_processes N` every
    process trains on its shard of each batch; the main one alone writes files, validates and tests."""

    cfg: ExperimentConfig
    accelerator: Accelerator
    dir: Path
    resuming: bool

    @property
    def files(self) -> RunDir:
        """The run folder's files by name (folder.py)."""
        return RunDir(self.dir)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes

    def log(self, record: dict) -> None:
        """One metrics.jsonl line (and the trackers'), written by the main process."""
        if not self.main:
            return
        with writing(self.files.metrics):
            append_jsonl(self.files.metrics, record)
        if self.cfg.trackers:
            flat = {k: v for k, v in record.items() if isinstance(v, (int, float))}
            flat.update({f"validation/{k}": v for k, v in record.get("validation", {}).items()})
            self.accelerator.log(flat, step=record["step"])


def open_run(cfg: ExperimentConfig, overwrite: bool, resume: bool, require_checkpoint: bool) -> Run:
    """The processes started and the folder prepared (runstart.py: fresh, resumed or refused), its
    config.yaml written by the main process before any other process looks at the folder."""
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=not cuda,
        mixed_precision="no",  # peftlab sets the numerics itself, the same for every method (precision.py)
        log_with=cfg.trackers or None,
        project_dir=str(cfg.run_dir()),
        # Under `accelerate launch`, the other processes wait while the main one validates.
        kwargs_handlers=[InitProcessGroupKwargs(timeout=datetime.timedelta(hours=6))],
    )
    console.quiet = not accelerator.is_main_process
    if accelerator.is_main_process:
        run_dir, resuming = prepare_run_dir(cfg, overwrite, resume, require_checkpoint)
        atomic_write_text(RunDir(run_dir).config, dump_config(cfg))
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        run_dir = cfg.run_dir()
        resuming = resume and checkpoint.exists(run_dir)  # the main process removed any it will not resume
    if cfg.trackers:
        accelerator.init_trackers(
            "tracking",
            config={
                "run": cfg.run_name(),
                "label": cfg.label or cfg.method.name,
                "method": cfg.method.name,
                "seed": cfg.seed,
            },
        )
    return Run(cfg, accelerator, run_dir, resuming)
