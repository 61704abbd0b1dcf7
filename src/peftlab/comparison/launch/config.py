"""The experiment's `launcher:` section (and `compare --launcher/--parallel/--devices`): where a
comparison's runs go. See launch/local.py, launch/slurm.py, launch/ray_tasks.py."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlurmOptions(_Strict):
    partition: str | None = Field(None, description="Slurm partition (None: the cluster's default).")
    time_min: int = Field(
        240, ge=1, description="Time limit per run, minutes; at the limit the run checkpoints and is requeued."
    )
    gpus_per_run: int = Field(0, ge=0, description="GPUs per run (per array task), at least its processes.")
    cpus_per_run: int = Field(4, ge=1, description="CPUs per run.")
    mem_gb: int | None = Field(None, ge=1, description="Memory per run, GB (None: the partition's default).")
    max_concurrent: int | None = Field(None, ge=1, description="At most this many array tasks at once (%N).")
    executor: Literal["slurm", "local", "debug"] = Field(
        "slurm", description="submitit's executor: slurm on a cluster; local or debug to try the grid on this machine."
    )
    requeues: int = Field(3, ge=0, description="How often a timed-out or pre-empted run is requeued.")


class RayOptions(_Strict):
    address: str | None = Field(
        None, description="A running Ray cluster (e.g. ray://head:10001 or auto); None starts a local one."
    )
    gpus_per_run: float = Field(
        0, ge=0, description="GPUs each run requests, at least its processes (Ray sets CUDA_VISIBLE_DEVICES)."
    )
    cpus_per_run: float = Field(1, gt=0, description="CPUs each run requests.")
    num_cpus: int | None = Field(None, ge=1, description="A local cluster's CPUs (None: all of this machine's).")
    num_gpus: int | None = Field(None, ge=0, description="A local cluster's GPUs (None: those Ray detects).")


class LauncherConfig(_Strict):
    name: Literal["local", "slurm", "ray"] = Field(
        "local", description="local (a process pool), slurm (submitit) or ray."
    )
    parallel: int = Field(1, ge=1, description="local: at most this many runs at once.")
    devices: list[str] | None = Field(
        None, description="local: GPU ids to spread runs over, one CUDA_VISIBLE_DEVICES slot per process of a run."
    )
    wait: bool = Field(
        True, description="slurm: wait for every run and write the report (without: a dependent job writes it)."
    )
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)
    ray: RayOptions = Field(default_factory=RayOptions)
