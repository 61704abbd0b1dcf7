"""The Slurm launcher: a comparison's grid as ONE Slurm job array, through submitit.

One array task per run. Each task is a ``TrainJob`` (a submitit ``Checkpointable``) that runs the
run's training command (`peftlab train CONFIG --resume`) in a child process, appends its output to
the run folder's train.log and returns the exit code; the driver turns the codes into outcomes as
the local launcher does. Nothing of the run lives in the task: the run folder is the state, so a
task that starts again (a requeue, a second `compare`) continues from the folder's checkpoint.

Time limits and pre-emption. Slurm sends submitit's signal (USR2) ``signal_delay_s`` before the
time limit (``#SBATCH --signal``). submitit's handler in the task calls ``TrainJob.checkpoint``,
which sends SIGTERM to the child (peftlab train saves a checkpoint at the end of its step and
exits), waits for it, and returns the same call again; submitit dumps it and requeues the task
(`scontrol requeue`), and the requeued task runs ``--resume``. Requeues are bounded by
``SlurmOptions.requeues``: submitit itself only counts time-outs (``max_num_timeout``), so the task
also counts every requeue (time-out or pre-emption) and stops requeueing past the bound (the run
then ends failed, with its checkpoint: rerunning the comparison resumes it).

Executors. ``executor: slurm`` needs a cluster (srun on PATH). ``local`` runs every task at once as
processes on this machine (submitit's local executor has no array throttle: ``max_concurrent`` does
not apply) and honours time_min and requeues like Slurm; ``debug`` runs the tasks one after another
inside this process, with no signals and so no requeue.

``wait: false`` (Slurm only): submit, print the array's id and how to follow it, submit a small
report job that starts when every task has ended (``--dependency=afterany:ID``) and return an
empty list: no run has finished yet, so there are no outcomes to give. The local and debug
executors always wait (a dependent job needs a scheduler; debug only runs while waited on).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import submitit

from peftlab.comparison.launch.config import SlurmOptions
from peftlab.comparison.launch.job import Job, Outcome, cpu_threads, launch_env, outcome
from peftlab.console import console
from peftlab.errors import PeftlabError
from peftlab.rundir.folder import LOG
from peftlab.rundir.runlock import job_id as scheduler_job_id

SIGNAL_DELAY_S = 180  # submitit's signal this long before the time limit: the checkpoint must fit in it
# submitit's local executor signals 30 s before its time limit (its signal_delay_s is not settable through
# AutoExecutor).
LOCAL_SIGNAL_DELAY_S = 30
REPORT_TIME_MIN = 30  # the dependent report job's time limit


class TrainJob(submitit.helpers.Checkpointable):
    """One array task: the run's training command in a child process, stopped cleanly on time-out.

    ``slot``: the task's index in the array; ``concurrency`` and ``threads``: how many runs share
    this machine and how many CPU threads each may use (None: leave the environment's);
    ``requeues``: how often this task may be requeued; ``grace_s``: how long a stopped child may
    take to write its checkpoint before it is killed."""

    def __init__(
        self, slot: str, concurrency: int = 1, threads: str | None = None, requeues: int = 3, grace_s: float = 150
    ):
        self.slot, self.concurrency, self.threads = slot, concurrency, threads
        self.requeues, self.grace_s = requeues, grace_s
        self.requeued = 0  # pickled with the requeued call, so the count survives requeues
        self._process: subprocess.Popen | None = None
        self._waiter: threading.Thread | None = None

    # The child and its waiter belong to the process that started them: a requeued task (unpickled in
    # a new process) starts its own.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_process", "_waiter")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _process=None, _waiter=None)

    def __call__(self, job: Job) -> int:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        ident = task_job_id()
        env = {**os.environ, **launch_env(SlurmLauncher.name, self.slot, self.concurrency, ident)}
        if self.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = self.threads
        with open(job.files.log, "a", encoding="utf-8") as log:
            where = (f", job {ident}" if ident else "") + (f" (requeue {self.requeued})" if self.requeued else "")
            log.write(f"--- peftlab slurm launcher: {job.name}{where}, {time.strftime('%c')}\n")
            log.flush()
            # Same process group as the task: a scancel or pre-emption SIGTERM reaches the trainer directly.
            # It ignores submitit's signal, which Slurm may send to every process of the step: that
            # signal is for submitit's handler here, which stops the child with SIGTERM.
            self._process = subprocess.Popen(
                job.command(), env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_ignore_preempt_signal
            )
            # One thread does the only waitpid on the child, so that checkpoint() (run by submitit's signal
            # handler in this thread, at any point) can wait for it without Popen's non-reentrant wait lock.
            self._waiter = threading.Thread(target=self._process.wait, daemon=True)
            self._waiter.start()
            while self._waiter.is_alive():
                # A timeout, not a bare join: a signal delivered to the waiter thread only runs its Python
                # handler when this (main) thread wakes.
                self._waiter.join(timeout=1.0)
        return self._process.returncode

    def checkpoint(self, job: Job) -> submitit.helpers.DelayedSubmission | None:
        """submitit's time-out / pre-emption hook: stop the child (it saves a checkpoint), then hand back
        the same call to requeue, or None past ``requeues`` (submitit then ends the task as failed)."""
        self.stop()
        if self.requeued >= self.requeues:
            return None
        self.requeued += 1
        return submitit.helpers.DelayedSubmission(self, job)

    def stop(self) -> None:
        """SIGTERM to the running child, then wait up to ``grace_s`` for its checkpoint (else kill it)."""
        process, waiter = self._process, self._waiter
        if process is None or waiter is None:
            return
        try:
            process.send_signal(signal.SIGTERM)
        except ProcessLookupError:  # it ended meanwhile
            pass
        waiter.join(timeout=self.grace_s)
        if waiter.is_alive():
            process.kill()
            waiter.join(timeout=10)


def _ignore_preempt_signal() -> None:
    # In the child between fork and exec: an ignored signal stays ignored across exec.
    signal.signal(getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG), signal.SIG_IGN)


def task_job_id() -> str | None:
    """This task's scheduler id: Slurm's array task (as the run lock writes it), else submitit's."""
    found = scheduler_job_id()
    if found:
        return found
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (debug executor's exception(), direct calls)
        return None
    return f"{env.cluster}:{env.job_id}"


def write_report_job(folder: Path) -> str:
    """The dependent report job (wait: false): the comparison's report once every run has ended."""
    from peftlab.report import write_report  # local: matplotlib, only in the report job

    return str(write_report(folder))


class SlurmLauncher:
    name = "slurm"

    def __init__(self, options: SlurmOptions, folder: Path, wait: bool = True):
        self.options = options
        self.folder = Path(folder)
        # Only Slurm can hold a report job until the array ends; debug runs nothing unless waited on.
        self.wait = wait or options.executor != "slurm"
        if not wait and options.executor != "slurm":
            console.print(f"[dim]wait: false needs executor slurm; the {options.executor} executor waits[/dim]")

    def check(self, jobs: list[Job]) -> None:
        gpus = self.options.gpus_per_run
        for job in jobs:
            if gpus and job.processes > gpus:
                raise PeftlabError(
                    f"{job.name} needs {job.processes} GPUs (processes: {job.processes}) but slurm.gpus_per_run "
                    f"is {gpus}; set launcher.slurm.gpus_per_run to at least {job.processes}"
                )

    def executor(self) -> submitit.AutoExecutor:
        """submitit's executor for the configured cluster, its job files under <folder>/slurm."""
        cluster = self.options.executor
        try:
            # cluster named even for slurm: AutoExecutor would otherwise fall back to local without srun
            return submitit.AutoExecutor(
                folder=self.folder / "slurm",
                cluster=cluster,
                slurm_max_num_timeout=self.options.requeues,
                local_max_num_timeout=self.options.requeues,
            )
        except RuntimeError as e:  # SlurmExecutor: no srun on PATH
            raise PeftlabError(
                f"launcher slurm: no Slurm cluster here ({e}); run on a login node, or set "
                "launcher.slurm.executor: local (or debug) to try the grid on this machine"
            ) from None

    def signal_delay_s(self) -> int:
        # Short time limits: signal half-way rather than before the job even starts.
        return min(SIGNAL_DELAY_S, self.options.time_min * 30)

    def task(self, slot: int, jobs: list[Job]) -> TrainJob:
        o = self.options
        if o.executor == "local":  # every task at once on this machine: they share its CPUs
            concurrency, threads = len(jobs), cpu_threads(len(jobs))
        elif o.executor == "slurm":  # each task has its own reserved CPUs: nothing shared
            concurrency, threads = 1, str(o.cpus_per_run)
        else:  # debug: one after another, in this process
            concurrency, threads = 1, None
        # The child's checkpoint must fit between submitit's signal and the kill, with time left to requeue.
        delay = self.signal_delay_s() if o.executor == "slurm" else LOCAL_SIGNAL_DELAY_S
        grace = max(5, delay * 2 // 3)
        return TrainJob(str(slot), concurrency, threads, o.requeues, grace)

    def submit(self, jobs: list[Job]) -> list[submitit.Job]:
        """The grid as one job array (one task per run)."""
        o = self.options
        executor = self.executor()
        executor.update_parameters(
            name=f"peftlab-{self.folder.name}",
            timeout_min=o.time_min,
            nodes=1,
            tasks_per_node=1,  # one trainer per task; `accelerate launch` starts a run's k processes itself
            cpus_per_task=o.cpus_per_run,
            gpus_per_node=o.gpus_per_run,
            mem_gb=o.mem_gb,
            slurm_partition=o.partition,
            slurm_array_parallelism=o.max_concurrent or len(jobs),
            slurm_signal_delay_s=self.signal_delay_s(),
        )
        with executor.batch():  # one sbatch --array for the whole grid
            tasks = [executor.submit(self.task(i, jobs), job) for i, job in enumerate(jobs)]
        return tasks

    def run(self, jobs: list[Job]) -> list[Outcome]:
        if not jobs:
            return []
        self.check(jobs)
        tasks = self.submit(jobs)
        array_id = tasks[0].job_id.split("_")[0]
        slurm = self.options.executor == "slurm"
        where = f"Slurm array job {array_id}" if slurm else f"submitit's {self.options.executor} executor"
        console.print(f"[dim]submitted[/dim] {len(jobs)} run(s) to {where} (its files: {self.folder / 'slurm'})")
        if not self.wait:
            self.detach(array_id)
            return []  # nothing has finished yet: the report job writes the report
        try:
            return [self.collect(job, task) for job, task in zip(jobs, tasks)]
        except KeyboardInterrupt:
            if slurm:  # the cluster's tasks do not depend on this driver
                console.print(
                    f"stopped waiting; the array keeps running (scancel {array_id} stops it: each run gets SIGTERM "
                    f"and checkpoints); once it ends:  peftlab report {self.folder}"
                )
            raise

    def detach(self, array_id: str) -> None:
        """wait: false: a report job that starts once every task has ended, and how to follow the array."""
        executor = self.executor()
        executor.update_parameters(
            name=f"peftlab-{self.folder.name}-report",
            timeout_min=REPORT_TIME_MIN,
            nodes=1,
            tasks_per_node=1,
            cpus_per_task=1,
            slurm_partition=self.options.partition,
            slurm_dependency=f"afterany:{array_id}",  # afterany: the report shows failed runs too
        )
        report = executor.submit(write_report_job, self.folder)
        console.print(
            f"not waiting: follow the runs with  squeue -j {array_id}  (logs: each run's {LOG}); "
            f"report job {report.job_id} writes the report when they end, or run  peftlab report {self.folder}"
        )

    def collect(self, job: Job, task: submitit.Job) -> Outcome:
        """Wait for one task and say how it ended (a task that raised, or was not requeued: failed)."""
        log = job.files.log
        try:
            # exception() waits and returns the task's error instead of raising it (and the debug
            # executor's result() would open a post-mortem debugger on one)
            error = task.exception()
            returncode = None if error else task.result()
        except Exception as e:  # submitit could not read the task's result (it died, was cancelled)
            error, returncode = e, None
        if returncode is None:
            where = f"; its output: {log}" if log.exists() else ""
            result = Outcome(job.name, "failed", f"task {task.job_id}: {error_line(error)}{where}")
        else:
            result = outcome(job, returncode, log)
        colour = {"finished": "green", "skipped": "yellow", "failed": "red"}[result.status]
        console.print(f"[{colour}]{result.status}[/{colour}] {job.name} {result.detail}".rstrip())
        return result


def error_line(error: BaseException | None) -> str:
    """One line for a failed task: the last line of the task's traceback when submitit carries one
    (the exception itself), else the error's type and first line."""
    text = str(error)
    rule = "-" * 22  # submitit's FailedJobError puts the task's traceback between two such rules
    if text.count(rule) >= 2:
        trace = [line.strip() for line in text.split(rule)[1].splitlines() if line.strip()]
        if trace:
            return trace[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
