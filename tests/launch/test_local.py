"""The local launcher: at most N runs at once, each on its own device slot(s), and a run's exit code
in words (75: the folder is being trained elsewhere)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from peftlab.comparison.launch.job import Job
from peftlab.comparison.launch.local import LocalLauncher
from peftlab.errors import PeftlabError

# A stand-in for `peftlab train`: records what it saw and when, then exits with the code asked for.
RECORD = textwrap.dedent(
    """
    import json, os, sys, time
    start = time.time(); time.sleep(float(sys.argv[2])); end = time.time()
    keys = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "PEFTLAB_LAUNCHER", "PEFTLAB_SLOT", "PEFTLAB_CONCURRENCY")
    seen = {k: os.environ.get(k) for k in keys}
    open(sys.argv[1], "w").write(json.dumps({"start": start, "end": end, **seen}))
    sys.exit(int(sys.argv[3]))
    """
)


def fake(tmp_path: Path, name: str, seconds: float = 0.6, code: int = 0, processes: int = 1) -> Job:
    record = tmp_path / f"{name}.json"
    argv = (sys.executable, "-c", RECORD, str(record), str(seconds), str(code))
    return Job(name, Path("unused.yaml"), tmp_path / name, processes=processes, argv=argv)


def seen(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / f"{name}.json").read_text())


def overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_two_devices_two_at_a_time_each_on_its_own_slot(tmp_path):
    names = ["a", "b", "c", "d"]
    outcomes = LocalLauncher(parallel=2, devices=["3", "5"]).run([fake(tmp_path, n) for n in names])
    assert [o.status for o in outcomes] == ["finished"] * 4
    runs = {n: seen(tmp_path, n) for n in names}
    assert {r["CUDA_VISIBLE_DEVICES"] for r in runs.values()} == {"3", "5"}
    assert all(
        r["PEFTLAB_LAUNCHER"] == "local" and r["PEFTLAB_SLOT"] == r["CUDA_VISIBLE_DEVICES"] for r in runs.values()
    )
    for x in names:
        at_once = [y for y in names if overlap(runs[x], runs[y])]  # x itself included
        assert len(at_once) <= 2
        assert len({runs[y]["CUDA_VISIBLE_DEVICES"] for y in at_once}) == len(at_once)  # never one slot twice
    assert any(overlap(runs["a"], runs[y]) for y in ["b", "c", "d"])  # and they did run side by side


def test_a_run_of_two_processes_takes_both_slots(tmp_path):
    jobs = [fake(tmp_path, "one"), fake(tmp_path, "both", processes=2), fake(tmp_path, "two")]
    LocalLauncher(parallel=2, devices=["0", "1"]).run(jobs)
    runs = {n: seen(tmp_path, n) for n in ["one", "both", "two"]}
    assert runs["both"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert not overlap(runs["both"], runs["one"]) and not overlap(runs["both"], runs["two"])
    with pytest.raises(PeftlabError, match="needs 3 slots"):
        LocalLauncher(parallel=2, devices=["0", "1"]).run([fake(tmp_path, "three", processes=3)])


def test_exit_codes_in_words_and_each_run_logs_into_its_folder(tmp_path):
    outcomes = LocalLauncher(parallel=2).run(
        [fake(tmp_path, "ok"), fake(tmp_path, "held", code=75), fake(tmp_path, "bad", code=1)]
    )
    status = {o.name: o for o in outcomes}
    assert (status["ok"].status, status["held"].status, status["bad"].status) == ("finished", "skipped", "failed")
    assert "being trained by" in status["held"].detail
    assert "exit code 1" in status["bad"].detail and str(tmp_path / "bad" / "train.log") in status["bad"].detail
    assert (tmp_path / "bad" / "train.log").is_file()
    # Concurrent CPU runs split the threads; the slot is the run's place in the pool.
    threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert seen(tmp_path, "ok")["OMP_NUM_THREADS"] == threads and seen(tmp_path, "ok")["PEFTLAB_CONCURRENCY"] == "2"


def test_one_at_a_time_leaves_the_environment_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    LocalLauncher().run([fake(tmp_path, "a", seconds=0)])
    record = seen(tmp_path, "a")
    assert (record["CUDA_VISIBLE_DEVICES"], record["OMP_NUM_THREADS"], record["PEFTLAB_CONCURRENCY"]) == ("7", "3", "1")
    assert not (tmp_path / "a" / "train.log").exists()  # one run at a time: its output is on the terminal


DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from peftlab.comparison.launch.job import Job
    from peftlab.comparison.launch.local import LocalLauncher
    child = '''
    import signal, sys, time
    from pathlib import Path
    def stop(signum, frame):
        Path(sys.argv[1]).write_text("checkpointed")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    Path(sys.argv[1] + ".started").write_text("")
    time.sleep(60)
    '''
    tmp = Path(sys.argv[1])
    jobs = [Job(n, Path("x"), tmp / n, argv=(sys.executable, "-c", child, str(tmp / n) + ".marker")) for n in "ab"]
    LocalLauncher(parallel=2).run(jobs)
    """
)


def test_ctrl_c_on_the_driver_stops_every_child_with_sigterm(tmp_path):
    # A shell that starts the suite in the background ignores SIGINT, and children inherit that:
    # the driver gets Python's own SIGINT handler back, as in a terminal.
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], preexec_fn=restore)
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{n}.marker.started").exists() for n in "ab"):
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.1)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=60) != 0
    assert [(tmp_path / f"{n}.marker").read_text() for n in "ab"] == ["checkpointed", "checkpointed"]
