"""The Ray launcher on a local Ray with 2 CPUs and 2 declared (fake) GPUs: each run in its own
subprocess on the GPU Ray assigned it, exit codes in words, and Ctrl-C stopping the runs cleanly.

One Ray session for the whole file (starting one takes several seconds); the launcher reuses a Ray
this process already initialised and leaves it running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import ray

from peftlab.comparison.launch.config import RayOptions
from peftlab.comparison.launch.job import Job
from peftlab.comparison.launch.ray_tasks import RayLauncher, child_env
from peftlab.errors import PeftlabError
from peftlab.rundir.folder import LOG

# A stand-in for `peftlab train`: waits until its partner has started too (so the two certainly ran
# at once), then records what it saw and when.
TOGETHER = textwrap.dedent(
    """
    import json, os, pathlib, signal, sys, time
    me, partner = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    start = time.time()
    me.with_suffix(".started").touch()
    while not partner.with_suffix(".started").exists():
        if time.time() > start + 60:
            sys.exit(3)
        time.sleep(0.05)
    time.sleep(1)
    keys = ("CUDA_VISIBLE_DEVICES", "PEFTLAB_LAUNCHER", "PEFTLAB_SLOT", "PEFTLAB_CONCURRENCY", "PEFTLAB_JOB_ID")
    seen = {k: os.environ.get(k) for k in keys}
    blocked = sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    me.write_text(json.dumps({"start": start, "end": time.time(), "blocked": blocked, **seen}))
    print("hello from", me.stem)
    """
)

# A stand-in for a long training run: on SIGTERM it takes a second to "checkpoint", then exits 0.
STOPPABLE = textwrap.dedent(
    """
    import os, pathlib, signal, sys, time
    folder = pathlib.Path(sys.argv[1])
    def checkpoint(*_):
        time.sleep(1)
        (folder / "checkpointed").touch()
        sys.exit(0)
    signal.signal(signal.SIGTERM, checkpoint)
    (folder / "started").write_text(str(os.getpid()))
    time.sleep(60)
    sys.exit(4)
    """
)

GPU_RUNS = RayOptions(gpus_per_run=1, cpus_per_run=1, num_cpus=2, num_gpus=2)


@pytest.fixture(scope="module")
def ray_session():
    started = time.perf_counter()
    # Started as from a background job (nohup, `&` in a script, a batch system), whose processes inherit
    # SIGINT ignored, and so do Ray's workers: the launcher must stop its runs there too.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"ray started in {time.perf_counter() - started:.1f} s")
    yield
    ray.shutdown()


def job(tmp_path: Path, name: str, code: str, *args: str) -> Job:
    return Job(name, config=Path("x"), run_dir=tmp_path / name, argv=(sys.executable, "-c", code, *args))


def test_runs_each_get_their_own_gpu_and_exit_codes_become_outcomes(ray_session, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    jobs = [
        job(tmp_path, "a", TOGETHER, str(a), str(b)),
        job(tmp_path, "b", TOGETHER, str(b), str(a)),
        job(tmp_path, "locked", "import sys; sys.exit(75)"),
        job(tmp_path, "broken", "import sys; sys.exit(1)"),
    ]
    outcomes = {o.name: o for o in RayLauncher(GPU_RUNS).run(jobs)}

    assert {name: o.status for name, o in outcomes.items()} == {
        "a": "finished",
        "b": "finished",
        "locked": "skipped",
        "broken": "failed",
    }
    assert "being trained by" in outcomes["locked"].detail
    assert "exit code 1" in outcomes["broken"].detail and str(tmp_path / "broken" / LOG) in outcomes["broken"].detail

    seen = {name: json.loads(path.read_text()) for name, path in (("a", a), ("b", b))}
    assert seen["a"]["start"] < seen["b"]["end"] and seen["b"]["start"] < seen["a"]["end"]  # at once
    assert {s["CUDA_VISIBLE_DEVICES"] for s in seen.values()} == {"0", "1"}  # so never one GPU twice
    for s in seen.values():
        assert s["PEFTLAB_LAUNCHER"] == "ray"
        assert s["PEFTLAB_SLOT"] == s["CUDA_VISIBLE_DEVICES"]
        assert s["PEFTLAB_CONCURRENCY"] == "2"
        assert s["PEFTLAB_JOB_ID"].startswith("ray:") and len(s["PEFTLAB_JOB_ID"]) > len("ray:")
        assert signal.SIGINT not in s["blocked"]  # Ray workers block SIGINT; the run must not inherit that
    assert seen["a"]["PEFTLAB_JOB_ID"] != seen["b"]["PEFTLAB_JOB_ID"]

    log = (tmp_path / "a" / LOG).read_text()
    assert "--- ray task" in log and "hello from a" in log  # the child's output, appended to its run's log
    assert ray.is_initialized()  # a Ray the launcher did not start is left running


def test_ctrl_c_cancels_queued_runs_and_lets_running_ones_checkpoint(ray_session, tmp_path, request):
    # A shell that starts the suite in the background ignores SIGINT in it: give this test Python's own.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    names = ["one", "two", "three"]  # two GPUs: one run waits for a GPU (Ray picks which)
    jobs = [job(tmp_path, n, STOPPABLE, str(tmp_path / n)) for n in names]

    def started() -> list[str]:
        return [n for n in names if (tmp_path / n / "started").exists()]

    def press_ctrl_c():
        deadline = time.monotonic() + 300  # a loaded machine may take long to start Ray's workers
        while len(started()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        RayLauncher(GPU_RUNS).run(jobs)

    running = started()
    assert len(running) == 2, running  # the third never started: it was cancelled while queued
    # The driver returned only after each running child had saved its checkpoint and exited.
    report = {n: diagnose(tmp_path / n) for n in running}
    assert all(r["checkpointed"] and not r["alive"] for r in report.values()), report


def diagnose(folder: Path) -> dict:
    """What a failed assertion needs: did the child checkpoint, is it still alive, what its log says."""
    pid = int((folder / "started").read_text())
    log = folder / LOG
    return {
        "checkpointed": (folder / "checkpointed").exists(),
        "alive": alive(pid),
        "log": log.read_text()[-2000:] if log.exists() else None,
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_run_without_gpus_sees_none_and_gets_its_cpu_threads():
    env = child_env([], cpus_per_run=2.5, concurrency=3, job_id="ray:t1")
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["OMP_NUM_THREADS"] == "2"
    assert "PEFTLAB_SLOT" not in env
    assert env["PEFTLAB_CONCURRENCY"] == "3" and env["PEFTLAB_JOB_ID"] == "ray:t1"

    env = child_env(["0", "1"], cpus_per_run=2, concurrency=1, job_id="ray:t2")
    assert env["CUDA_VISIBLE_DEVICES"] == env["PEFTLAB_SLOT"] == "0,1"
    assert "OMP_NUM_THREADS" not in env


def test_starts_a_local_cluster_with_the_declared_resources_or_joins_one(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))

    assert RayLauncher(RayOptions(num_cpus=3, num_gpus=1)).connect()
    assert RayLauncher(RayOptions(address="ray://head:10001")).connect()
    local, remote = calls
    assert (local["num_cpus"], local["num_gpus"], local["include_dashboard"]) == (3, 1, False)
    assert remote["address"] == "ray://head:10001" and "num_cpus" not in remote and "num_gpus" not in remote


def test_shuts_down_only_a_ray_it_started(ray_session, monkeypatch, tmp_path):
    shutdowns = []
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(True))
    jobs = [job(tmp_path, "quick", "pass")]

    assert [o.status for o in RayLauncher(GPU_RUNS).run(jobs)] == ["finished"]
    assert shutdowns == []  # reused the module's session

    monkeypatch.setattr(RayLauncher, "connect", lambda self: True)  # as if it had started this one
    assert [o.status for o in RayLauncher(GPU_RUNS).run(jobs)] == ["finished"]
    assert shutdowns == [True]


def test_a_run_of_k_processes_gets_gpus_per_run_gpus_at_least_k():
    two = Job("two", config=Path("x"), run_dir=Path("x"), processes=2)
    assert RayLauncher(RayOptions(gpus_per_run=2)).gpus(two) == 2  # in all, as under Slurm: not 2 per process
    assert RayLauncher(RayOptions(gpus_per_run=0)).gpus(two) == 0  # a CPU run
    with pytest.raises(PeftlabError, match="set launcher.ray.gpus_per_run to at least 2"):
        RayLauncher(RayOptions(gpus_per_run=1)).gpus(two)
