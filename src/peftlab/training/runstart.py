"""Starting a run folder: a finished run is never overwritten unless asked, an unfinished one is
resumed when asked, and an unwritable folder stops the run before training (free space: diskspace.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from peftlab.config import ExperimentConfig, same_config
from peftlab.errors import PeftlabError
from peftlab.rundir.folder import LOCK, LOG, RunDir
from peftlab.rundir.runio import atomic_write_text, finished_with_config
from peftlab.rundir.runlock import LOCKED_EXIT
from peftlab.training import checkpoint


class RunFinished(PeftlabError):
    exit_code = LOCKED_EXIT  # like a held lock: the run was not trained here, and need not be


def prepare_run_dir(
    cfg: ExperimentConfig, overwrite: bool, resume: bool = False, require_checkpoint: bool = False
) -> tuple[Path, bool]:
    """(run folder, whether to resume from its checkpoint). A finished run is never overwritten
    unless asked; an unfinished one with a checkpoint of the same config is resumed when asked."""
    run_dir = cfg.run_dir()
    finished, same = finished_with_config(run_dir, same_config(cfg))
    if finished and same and resume and not overwrite:
        # Another trainer finished it between the launcher's check and this one's lock: nothing to do.
        raise RunFinished(f"{run_dir} was finished by another trainer meanwhile; nothing to do")
    if finished and not overwrite:
        raise PeftlabError(f"{run_dir} already holds a finished run; pass --overwrite or choose another --set name=...")
    if resume and not overwrite and same and checkpoint.exists(run_dir):
        return run_dir, True
    if require_checkpoint:
        raise PeftlabError(
            f"{run_dir}: no checkpoint to resume from (the run stopped before its first checkpoint, "
            "or its config.yaml changed); start it again without --resume"
        )
    try:
        clear(run_dir)
        probe = RunDir(run_dir).write_test
        atomic_write_text(probe, "ok")  # an unwritable or full disk fails here, not mid-run
        probe.unlink()
    except OSError as e:
        raise PeftlabError(
            f"cannot write the run folder {run_dir}: {e.strerror or e} (check output_dir and free disk space)"
        ) from None
    return run_dir, False


# Kept when a run folder starts over: the trainer's lock (held by this process, runlock.py) and the
# launcher's log, which the launcher opened before this process started and still writes to.
KEEP = frozenset({LOCK, LOG})


def clear(run_dir: Path) -> None:
    """Empty the run folder (create it if needed), keeping KEEP."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for p in run_dir.iterdir():
        if p.name in KEEP:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
