"""The Slurm launcher without a cluster: submitit's local and debug executors run the grid on this
machine; a stand-in sbatch shows what would reach Slurm (one array, the dependent report job)."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from submitit.core.utils import DelayedSubmission

from peftlab.comparison.launch.config import SlurmOptions
from peftlab.comparison.launch.job import Job, cpu_threads
from peftlab.comparison.launch.slurm import SlurmLauncher, TrainJob, write_report_job
from peftlab.errors import PeftlabError
from peftlab.rundir.folder import LOG

# A stand-in for `peftlab train`: records the launcher's environment, prints a line, exits with the code asked for.
RECORD = textwrap.dedent(
    """
    import json, os, sys
    keys = ("PEFTLAB_LAUNCHER", "PEFTLAB_JOB_ID", "PEFTLAB_SLOT", "PEFTLAB_CONCURRENCY")
    open(sys.argv[1], "w").write(json.dumps({k: os.environ.get(k) for k in keys}))
    print("trainer output")
    sys.exit(int(sys.argv[2]))
    """
)

# A long run that checkpoints on SIGTERM: the first attempt writes `stopped` when asked to stop; an
# attempt that finds it finishes at once (as `--resume` would from the checkpoint). Never stopped, it
# gives up after 30 s with exit code 3 (a test fails rather than hangs).
LONG = textwrap.dedent(
    """
    import os, pathlib, signal, sys, time
    d = pathlib.Path(sys.argv[1])
    with open(d / "attempts", "a") as f:
        f.write(f"{os.environ.get('PEFTLAB_JOB_ID')}\\n")
    if (d / "stopped").exists():
        sys.exit(0)
    def stop(*_):
        (d / "stopped").write_text("checkpoint")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    (d / "child.pid").write_text(str(os.getpid()))
    (d / "task.pid").write_text(str(os.getppid()))  # the submitit task that runs this
    for _ in range(600):
        time.sleep(0.05)
    sys.exit(3)
    """
)


def fake(tmp_path: Path, name: str, code: int = 0) -> Job:
    argv = (sys.executable, "-c", RECORD, str(tmp_path / f"{name}.json"), str(code))
    return Job(name, Path("unused.yaml"), tmp_path / name, argv=argv)


def long_job(tmp_path: Path) -> Job:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return Job("long", Path("unused.yaml"), tmp_path / "long", argv=(sys.executable, "-c", LONG, str(tmp_path)))


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_grid_runs_each_job_as_an_array_task_and_maps_exit_codes(tmp_path):
    # debug: the tasks run in this process, one after another (the local executor's processes are
    # exercised by the requeue test and the real run below)
    jobs = [fake(tmp_path, "ok"), fake(tmp_path, "busy", code=75), fake(tmp_path, "broken", code=1)]
    outcomes = SlurmLauncher(SlurmOptions(executor="debug"), tmp_path).run(jobs)
    assert [(o.name, o.status) for o in outcomes] == [("ok", "finished"), ("busy", "skipped"), ("broken", "failed")]
    assert str(tmp_path / "broken" / LOG) in outcomes[2].detail and "exit code 1" in outcomes[2].detail
    for slot, name in enumerate(["ok", "busy", "broken"]):
        env = json.loads((tmp_path / f"{name}.json").read_text())
        assert env["PEFTLAB_LAUNCHER"] == "slurm" and env["PEFTLAB_SLOT"] == str(slot)
        assert env["PEFTLAB_CONCURRENCY"] == "1"
        log = (tmp_path / name / LOG).read_text()
        assert log.startswith(f"--- peftlab slurm launcher: {name}") and "trainer output" in log


def test_runs_share_this_machines_cpus_only_under_the_local_executor(tmp_path):
    jobs = [fake(tmp_path, n) for n in "abc"]
    local = SlurmLauncher(SlurmOptions(executor="local"), tmp_path).task(2, jobs)
    assert (local.slot, local.concurrency, local.threads) == ("2", 3, cpu_threads(3))  # every task at once
    cluster = SlurmLauncher(SlurmOptions(cpus_per_run=6), tmp_path).task(0, jobs)
    assert (cluster.concurrency, cluster.threads) == (1, "6")  # its own reserved CPUs


def test_a_task_that_raises_is_failed(tmp_path):
    job = Job("missing", Path("unused.yaml"), tmp_path / "missing", argv=(str(tmp_path / "no-such-program"),))
    (outcome,) = SlurmLauncher(SlurmOptions(executor="debug"), tmp_path).run([job])
    assert outcome.status == "failed" and "FileNotFoundError" in outcome.detail


def test_checkpoint_stops_the_child_and_hands_back_the_same_call(tmp_path):
    job = long_job(tmp_path)
    task = TrainJob("0", requeues=2, grace_s=30)
    codes = []
    running = threading.Thread(target=lambda: codes.append(task(job)))
    running.start()
    wait_for(tmp_path / "task.pid")
    again = task.checkpoint(job)
    running.join(timeout=30)
    assert (tmp_path / "stopped").read_text() == "checkpoint"  # the child got SIGTERM and checkpointed
    assert codes == [0] and not running.is_alive()
    assert isinstance(again, DelayedSubmission) and again.function is task and again.args == (job,)
    # submitit pickles the call it requeues: the running child stays behind, the requeue count travels
    again.dump(tmp_path / "requeued.pkl")
    requeued = DelayedSubmission.load(tmp_path / "requeued.pkl")
    assert requeued.function.requeued == 1 and requeued.function._process is None
    assert requeued.result() == 0  # the requeued call runs the job again (the resume finishes it)
    assert (tmp_path / "attempts").read_text().count("\n") == 2
    assert "(requeue 1)" in (job.run_dir / LOG).read_text()


def test_checkpoint_past_the_requeue_bound_stops_the_child_without_requeue(tmp_path):
    job = long_job(tmp_path)
    task = TrainJob("0", requeues=0, grace_s=30)
    running = threading.Thread(target=task, args=(job,))
    running.start()
    wait_for(tmp_path / "task.pid")
    assert task.checkpoint(job) is None  # submitit then ends the task, not requeued
    running.join(timeout=30)
    assert (tmp_path / "stopped").exists() and not running.is_alive()


def test_local_executor_requeues_a_preempted_task_which_resumes(tmp_path):
    job = long_job(tmp_path)
    launcher = SlurmLauncher(SlurmOptions(executor="local", requeues=1), tmp_path)
    (task,) = launcher.submit([job])
    wait_for(tmp_path / "task.pid")
    # What Slurm sends before a time limit or pre-emption, possibly to every process of the step: the
    # child ignores it (else it would die without a checkpoint); the task's handler stops it with SIGTERM.
    os.kill(int((tmp_path / "child.pid").read_text()), signal.SIGUSR2)
    os.kill(int((tmp_path / "task.pid").read_text()), signal.SIGUSR2)
    outcome = launcher.collect(job, task)
    assert outcome.status == "finished"
    attempts = (tmp_path / "attempts").read_text().split()
    assert len(attempts) == 2 and (tmp_path / "stopped").exists()  # stopped with a checkpoint, then requeued
    assert attempts[0] == attempts[1] and attempts[0].startswith("local:")  # one job, requeued
    assert "(requeue 1)" in (job.run_dir / LOG).read_text()


def fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """srun and sbatch stand-ins on PATH; sbatch keeps each submission file as <id>.sh."""
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir()
    record.mkdir()
    sbatch = f"""#!/bin/sh
n=$((4242 + $(ls {record} | wc -l)))
cp "$1" {record}/$n.sh
echo "Submitted batch job $n"
"""
    for name, text in (("sbatch", sbatch), ("srun", "#!/bin/sh\nexit 0\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_without_waiting_the_grid_is_one_array_and_a_report_job_follows_it(tmp_path, monkeypatch, capsys):
    record = fake_slurm(tmp_path, monkeypatch)
    options = SlurmOptions(
        partition="gpu", time_min=30, gpus_per_run=1, cpus_per_run=2, mem_gb=8, max_concurrent=2, requeues=5
    )
    folder = tmp_path / "cmp"
    jobs = [fake(tmp_path, n) for n in ("a", "b", "c")]
    assert SlurmLauncher(options, folder, wait=False).run(jobs) == []  # nothing has finished yet
    assert sorted(p.name for p in record.iterdir()) == ["4242.sh", "4243.sh"]  # one array, one report job
    array = (record / "4242.sh").read_text()
    for flag in ("array=0-2%2", "partition=gpu", "time=30", "gpus-per-node=1", "cpus-per-task=2", "mem=8GB"):
        assert f"#SBATCH --{flag}\n" in array
    assert "#SBATCH --signal=USR2@180" in array  # the checkpoint's time before the limit
    report = (record / "4243.sh").read_text()
    assert "#SBATCH --dependency=afterany:4242\n" in report and "gpus" not in report
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "squeue -j 4242" in err and f"peftlab report {folder}" in err
    # What each task and the report job will run (submitit's pickles of the calls).
    for slot, job in enumerate(jobs):
        call = DelayedSubmission.load(folder / "slurm" / f"4242_{slot}_submitted.pkl")
        assert isinstance(call.function, TrainJob) and call.function.slot == str(slot) and call.args == (job,)
        assert call.function.requeues == 5 and call._timeout_countdown == 5  # submitit's own time-out bound
    call = DelayedSubmission.load(folder / "slurm" / "4243_submitted.pkl")
    assert call.function is write_report_job and call.args == (folder,)


def test_no_cluster_and_too_few_gpus_are_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(PeftlabError, match="executor: local"):
        SlurmLauncher(SlurmOptions(), tmp_path).run([fake(tmp_path, "a")])
    wide = Job("wide", Path("unused.yaml"), tmp_path / "wide", processes=2)
    with pytest.raises(PeftlabError, match="gpus_per_run"):
        SlurmLauncher(SlurmOptions(executor="debug", gpus_per_run=1), tmp_path).run([wide])


# A real grid through submitit's local executor: tests/test_readme_launch.py (the README's slurm command).
