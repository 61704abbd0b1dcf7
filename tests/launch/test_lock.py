"""One trainer per run folder (runlock.py): a second one is refused with exit code 75 and names the
holder; a killed holder leaves no stale lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from peftlab.rundir.folder import RunDir
from peftlab.rundir.runlock import LOCKED_EXIT, RunLock, RunLocked

HOLD = textwrap.dedent(
    """
    import sys, time
    from peftlab.rundir.runlock import RunLock
    with RunLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_a_held_folder_is_refused_with_its_holder_named_and_free_again_after(tmp_path):
    with RunLock(tmp_path / "run"):
        info = json.loads(RunDir(tmp_path / "run").lock.read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}") as e:
            RunLock(tmp_path / "run").__enter__()
        assert e.value.exit_code == LOCKED_EXIT
    with RunLock(tmp_path / "run"):  # released: free to take
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
        RunLock(tmp_path / "run").__enter__()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with RunLock(tmp_path / "run"):  # the kernel released it with the process
        pass


def test_peftlab_train_on_a_folder_being_trained_exits_75_and_touches_nothing(tmp_path, copy_task):
    cfg = {
        "name": "r",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 4},
        "task": copy_task,
        "train": {"max_steps": 2, "batch_size": 2},
        "trackers": [],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    with RunLock(run_dir):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "peftlab", "train", str(tmp_path / "r.yaml"), "--resume"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == LOCKED_EXIT, done.stderr
    assert f"pid {os.getpid()}" in done.stderr and "not training it twice" in done.stderr
    assert (run_dir / "metrics.jsonl").read_text() == '{"step": 1}\n' and not (run_dir / "config.yaml").exists()
    assert time.monotonic() - started < 120
