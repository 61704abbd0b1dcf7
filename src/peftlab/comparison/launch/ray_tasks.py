"""The Ray launcher: one Ray task per run, on a running cluster (``address``) or a local one.

Ray does the scheduling: each run is a task that requests ``gpus_per_run`` GPUs (at least its
processes) and ``cpus_per_run`` CPUs, and Ray starts it when a node has them free. The task does not
train in the Ray worker: it starts the run's command (``Job.command()``) in a fresh subprocess, so
every run gets a clean interpreter, CUDA context and memory, exactly as under the local launcher,
and its output is appended to ``train.log`` in the run folder (opened on the node that runs it: on a
cluster, output_dir must be on a shared file system, and peftlab installed on every node).

The child sees exactly the GPUs Ray assigned: ``CUDA_VISIBLE_DEVICES`` is set explicitly from
``ray.get_gpu_ids()`` (Ray sets it in the worker too, but only while the task runs, and leaves it
untouched for a task without GPUs). A run that requests no GPUs sees none (``CUDA_VISIBLE_DEVICES``
empty) and ``OMP_NUM_THREADS`` threads for its CPUs, so CPU runs do not crowd GPUs that Ray gave to
others.

The driver prints one line per finished run as ``ray.wait`` returns it and maps each exit code to an
outcome like the other launchers (75: another trainer holds the folder, skipped). A task that raised
(or whose worker died) is a failed run with Ray's error.

Stopping (Ctrl-C or SIGTERM on the driver): the driver calls ``ray.cancel`` on every unfinished task.
For a queued task Ray drops it; for a running one (``force=False``) Ray raises KeyboardInterrupt in
the worker's main thread with ``_thread.interrupt_main`` -- no real signal, so it only lands between
Python bytecodes, and the task therefore polls its child instead of blocking in ``wait()``. The task
catches it, sends SIGTERM to its child (which saves a checkpoint at the end of its step and exits),
waits for it and re-raises. The driver waits for the cancelled tasks before it shuts Ray down,
because shutting down kills the workers, and a killed worker would leave its child training alone.
``force=True`` is never used: it kills the worker at once. A worker that gets SIGTERM itself (``ray
stop``) raises SystemExit from Ray's own handler, which the task handles the same way.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from peftlab.comparison.launch.config import RayOptions
from peftlab.comparison.launch.job import Job, Outcome, launch_env, outcome
from peftlab.console import console
from peftlab.errors import PeftlabError
from peftlab.rundir.folder import LOG

STOP_GRACE_S = 300  # how long a stopped child may take to write its checkpoint
POLL_S = 0.2  # how often a task looks at its child (and so how soon a cancel lands)
WAIT_S = 1.0  # the driver's ray.wait timeout: Ctrl-C is handled between waits
COLOURS = {"finished": "green", "skipped": "yellow", "failed": "red"}


class RayLauncher:
    name = "ray"

    def __init__(self, options: RayOptions):
        self.options = options

    def run(self, jobs: list[Job]) -> list[Outcome]:
        if not jobs:
            return []
        started = self.connect()
        # After ray.init, which sets its own SIGTERM handler (sys.exit) in the driver: a killed
        # driver stops its runs like Ctrl-C does.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            refs = self.submit(jobs)
            return self.collect(refs)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if started:
                # Stops a local cluster started here; for a cluster joined by address it only disconnects.
                ray.shutdown()

    def connect(self) -> bool:
        """Join the cluster at ``address`` or start a local one; True when this call ran ray.init.

        A Ray this process already initialised (a notebook, the tests) is used as it is and left running.
        """
        if ray.is_initialized():
            return False
        # ERROR: ray.init logs its startup and a token-authentication notice at INFO/WARNING.
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        if self.options.address:
            ray.init(address=self.options.address, **quiet)
        else:
            ray.init(num_cpus=self.options.num_cpus, num_gpus=self.options.num_gpus, include_dashboard=False, **quiet)
        return True

    def gpus(self, job: Job) -> float:
        """The run's GPUs: ``gpus_per_run`` in all, as under Slurm; a run of k processes needs at least k."""
        gpus = self.options.gpus_per_run
        if gpus and job.processes > gpus:
            raise PeftlabError(
                f"{job.name} needs {job.processes} GPUs (processes: {job.processes}) but ray.gpus_per_run is "
                f"{gpus:g}; set launcher.ray.gpus_per_run to at least {job.processes}"
            )
        return gpus

    def concurrency(self, jobs: list[Job]) -> int:
        """How many runs the cluster fits at once now (an autoscaling cluster may later fit more)."""
        total = ray.cluster_resources()
        fits = [total.get("CPU", 0) / self.options.cpus_per_run]
        if self.options.gpus_per_run:
            fits.append(total.get("GPU", 0) / max(self.gpus(job) for job in jobs))
        return max(1, min(len(jobs), math.floor(min(fits))))

    def submit(self, jobs: list[Job]) -> dict[ray.ObjectRef, Job]:
        concurrency = self.concurrency(jobs)
        task = ray.remote(run_task)
        refs = {
            task.options(name=job.name, num_gpus=self.gpus(job), num_cpus=self.options.cpus_per_run).remote(
                job, self.options.cpus_per_run, concurrency
            ): job
            for job in jobs
        }
        resources = ray.cluster_resources()
        console.print(
            f"[dim]ray:[/dim] {len(jobs)} run(s) on a cluster of {resources.get('CPU', 0):g} CPUs and "
            f"{resources.get('GPU', 0):g} GPUs, up to {concurrency} at once; each one's output: <run>/{LOG}"
        )
        return refs

    def collect(self, refs: dict[ray.ObjectRef, Job]) -> list[Outcome]:
        pending, done = list(refs), []
        try:
            while pending:
                # A timeout, so that Ctrl-C and SIGTERM are handled between waits.
                ready, pending = ray.wait(pending, num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    done.append(finish(refs[ref], ref, len(done) + 1, len(refs)))
        except KeyboardInterrupt:
            stop(pending)
            raise
        return done


def finish(job: Job, ref: ray.ObjectRef, count: int, total: int) -> Outcome:
    """The finished task's exit code as an outcome, and its console line."""
    try:
        result = outcome(job, ray.get(ref), job.files.log)
    except Exception as e:  # the task raised or its worker died: this run failed, the others go on
        result = Outcome(job.name, "failed", f"ray task: {error_text(e)}")
    colour = COLOURS[result.status]
    console.print(f"[{colour}]{result.status}[/{colour}] {job.name} [{count}/{total}] {result.detail}".rstrip())
    return result


def error_text(e: Exception) -> str:
    """The original exception of a RayTaskError (its repr wraps the remote traceback), else Ray's first line."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def stop(pending: list[ray.ObjectRef]) -> None:
    """Cancel the unfinished tasks and wait while the running ones checkpoint (a second Ctrl-C stops waiting)."""
    if not pending:
        return
    console.print(
        f"stopping {len(pending)} run(s): queued ones are cancelled, running ones save a checkpoint; "
        "rerun the command to resume"
    )
    for ref in pending:
        ray.cancel(ref)  # force=False: KeyboardInterrupt in a running task, which SIGTERMs its child
    try:
        ray.wait(pending, num_returns=len(pending), timeout=STOP_GRACE_S + 30)
    except KeyboardInterrupt:
        console.print("not waiting: shutting down Ray kills the workers; a run still stopping may lose its last steps")


def run_task(job: Job, cpus_per_run: float, concurrency: int) -> int:
    """In a Ray worker: the run's command in a fresh subprocess, its output appended to train.log; its exit code."""
    cancellable()
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    task_id = ray.get_runtime_context().get_task_id()
    env = {**os.environ, **child_env(gpu_ids, cpus_per_run, concurrency, f"ray:{task_id}")}
    job.run_dir.mkdir(parents=True, exist_ok=True)
    with open(job.files.log, "a", encoding="utf-8") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log.write(f"--- ray task {task_id} on {socket.gethostname()}, GPUs {','.join(gpu_ids) or 'none'}, {stamp}\n")
        log.flush()
        child = None
        try:
            with sigint_unblocked():
                # Its own session, like the local launcher's children: it is stopped by SIGTERM from this task only.
                child = subprocess.Popen(
                    job.command(),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            return wait_child(child)
        except (KeyboardInterrupt, SystemExit):
            # A cancel that lands while the child is being started, or while it runs: stop it either way.
            if child is not None:
                stop_child(child)
            raise


def child_env(gpu_ids: list[str], cpus_per_run: float, concurrency: int, job_id: str) -> dict[str, str]:
    """What the run's process is told: launcher, its GPUs (the slot) and, without GPUs, its CPU threads."""
    slot = ",".join(gpu_ids) or None
    env = launch_env(RayLauncher.name, slot, concurrency, job_id)
    # Explicit, also when empty: a run that requested no GPUs must not use GPUs Ray gave to other runs.
    env["CUDA_VISIBLE_DEVICES"] = slot or ""
    if not gpu_ids:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(max(1, int(cpus_per_run)))
    return env


def wait_child(child: subprocess.Popen) -> int:
    """The child's exit code. Polling, not child.wait(): a cancel arrives as interrupt_main (a
    KeyboardInterrupt between bytecodes), which a blocking waitpid would hold back until the run ended."""
    while child.poll() is None:
        time.sleep(POLL_S)
    return child.returncode


def stop_child(child: subprocess.Popen) -> None:
    """SIGTERM, then wait while the trainer saves a checkpoint at the end of its step; kill it only past
    STOP_GRACE_S. A repeated cancel while it checkpoints does not cut the wait short."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while child.poll() is None and time.monotonic() < deadline:
        try:
            time.sleep(POLL_S)
        except KeyboardInterrupt:
            continue
    if child.poll() is None:
        child.kill()
        child.wait()


def cancellable() -> None:
    """Make ``ray.cancel`` land in this task. It arrives as ``_thread.interrupt_main``, which does nothing
    while SIGINT is ignored -- and a Ray started from a background job (``nohup``, ``&`` in a script,
    a batch system) passes SIG_IGN on to its workers. The runs would then train on, unstopped, until the
    driver gives up waiting and Ray kills the workers. Normal tasks run in the worker's main thread,
    where Python lets a handler be set."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def sigint_unblocked() -> Iterator[None]:
    """Ray workers block SIGINT and a child inherits the signal mask: unblock it while the child is forked."""
    previous = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
