"""Inputs every run reads (the task's SQLite database, a hub download, the bundled model's
conversion) are made once by the compare driver, before any run starts."""

from __future__ import annotations

from pathlib import Path

import pytest

import peftlab.comparison.compare as compare_module
from peftlab.comparison.compare import compare
from tests.test_compare import experiment


class Started(Exception):
    """Raised by the fake launcher: the test only needs the moment runs would start."""


class RecordingLauncher:
    def __init__(self, database: Path, seen: list):
        self.database, self.seen = database, seen

    def run(self, jobs):
        self.seen.append((len(jobs), self.database.is_file()))
        raise Started


def test_the_driver_builds_the_task_database_once_before_any_run_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path / "cache"))
    database = tmp_path / "cache" / "tasks" / "sql_demo.sqlite"
    seen, builds = [], []
    build_task = compare_module.build_task
    monkeypatch.setattr(compare_module, "build_task", lambda cfg, log=None: builds.append(cfg.name) or build_task(cfg))
    monkeypatch.setattr(compare_module, "make_launcher", lambda cfg, folder: RecordingLauncher(database, seen))
    methods = [{"name": "lora", "rank": 4}, {"name": "prompt_tuning", "num_virtual_tokens": 4}]

    with pytest.raises(Started):
        compare(experiment(tmp_path, {"name": "sql_demo"}, methods=methods))

    # The first launch is every run (2 methods x 2 seeds), and the database was there before the first started.
    assert seen == [(4, True)]
    assert builds == ["sql_demo"]  # once for every run, not once per run


def test_nothing_is_prepared_when_every_run_is_finished(tmp_path, copy_task, monkeypatch):
    folder = compare(experiment(tmp_path, copy_task, methods=[{"label": "zero_shot", "name": "none"}]))
    builds = []
    monkeypatch.setattr(compare_module, "build_task", lambda cfg, log=None: builds.append(cfg.name))

    assert compare(experiment(tmp_path, copy_task, methods=[{"label": "zero_shot", "name": "none"}])) == folder
    assert builds == []  # a rerun that only rewrites the report reads no data
