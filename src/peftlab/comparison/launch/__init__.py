"""Where a comparison's runs go: one interface (``Launcher.run(jobs) -> outcomes``), three engines.

    local   a process pool on this machine (default): --parallel N, --devices 0,1,..   (local.py)
    slurm   a Slurm job array through submitit (pip install peftlab[slurm])           (slurm.py)
    ray     one Ray task per run on a running or local cluster (pip install peftlab[ray]) (ray_tasks.py)

No scheduler is written here beyond the local pool: the cluster engines do the scheduling.
"""

from __future__ import annotations

from pathlib import Path

from peftlab.comparison.launch.config import LauncherConfig
from peftlab.comparison.launch.job import Job, Launcher, Outcome
from peftlab.comparison.launch.local import LocalLauncher
from peftlab.errors import PeftlabError

__all__ = ["Job", "Launcher", "LauncherConfig", "Outcome", "make_launcher"]


def make_launcher(cfg: LauncherConfig, folder: Path) -> Launcher:
    """The launcher the config names; ``folder`` is the comparison's (slurm keeps its job files there)."""
    if cfg.name == "local":
        return LocalLauncher(cfg.parallel, cfg.devices)
    extra = {"slurm": "submitit", "ray": "ray"}[cfg.name]
    try:
        if cfg.name == "slurm":
            # local: the optional extra peftlab[slurm] is only imported when asked for
            from peftlab.comparison.launch.slurm import SlurmLauncher

            return SlurmLauncher(cfg.slurm, folder, wait=cfg.wait)
        # local: the optional extra peftlab[ray] is only imported when asked for
        from peftlab.comparison.launch.ray_tasks import RayLauncher

        return RayLauncher(cfg.ray)
    except ModuleNotFoundError as e:
        if e.name != extra:
            raise
        raise PeftlabError(
            f"launcher {cfg.name} needs {extra}: pip install 'peftlab[{cfg.name}]' (or pip install {extra})"
        ) from None
