"""The README's "More GPUs, more machines" commands, run as written on a tiny experiment: the
experiment path is the only word replaced (its launcher section picks submitit's local executor and
a local Ray of this machine's 2 CPUs, since CI has no cluster)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from peftlab.cli import main
from tests.test_compare import experiment, summaries

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## More GPUs, more machines", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def test_the_readme_shows_one_command_per_launcher():
    commands = readme_commands()
    assert [c[:2] for c in commands] == [["peftlab", "compare"]] * 4
    launchers = [c[c.index("--launcher") + 1] if "--launcher" in c else "local" for c in commands]
    assert launchers == ["local", "local", "slurm", "ray"]


@pytest.mark.parametrize("command", readme_commands(), ids=lambda c: " ".join(c[3:]))
def test_a_readme_command_runs_the_grid_and_writes_the_report(command, tmp_path, copy_task, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = experiment(tmp_path, copy_task, seeds=[0, 1], methods=[{"name": "lora", "rank": 4, "dropout": 0.0}])
    exp = yaml.safe_load(path.read_text())
    exp["launcher"] = {"slurm": {"executor": "local", "cpus_per_run": 1}, "ray": {"num_cpus": 2}}
    path.write_text(yaml.safe_dump(exp))

    assert main([*command[1:2], str(path), *command[3:]]) == 0

    folder = tmp_path / "runs" / "cmp"
    runs = summaries(folder)
    assert sorted(runs) == ["lora-s0", "lora-s1"]
    launcher = command[command.index("--launcher") + 1] if "--launcher" in command else "local"
    assert {r["launch"]["launcher"] for r in runs.values()} == {launcher}
    assert all(r["steps"] == 6 for r in runs.values())  # each ran its whole budget
    job_ids = {r["launch"]["job_id"] for r in runs.values()}
    if launcher == "local":
        assert job_ids == {None}
    else:  # submitit's local executor ("local:<pid>") and Ray ("ray:<task id>") name each run's job
        assert len(job_ids) == 2 and all(j.startswith(f"{'local' if launcher == 'slurm' else 'ray'}:") for j in job_ids)
    if "--devices" in command:  # each run had a slot of its own
        slots = [r["launch"]["slot"] for r in runs.values()]
        assert len(set(slots)) == 2 and set(slots) <= {"0", "1", "2", "3"}, slots
    assert [row["label"] for row in json.loads((folder / "leaderboard.json").read_text())] == ["lora"]
