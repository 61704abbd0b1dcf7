"""A comparison's settings are locked: per-method overrides of the budget or of scoring need a stated
reason, and the report never averages or ranks runs that were not measured the same way."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from peftlab.comparison.compare import load_compare, run_configs
from peftlab.errors import PeftlabError
from peftlab.report import write_report
from peftlab.report.aggregate import compare_runs
from peftlab.report.runs import load_runs
from peftlab.training.train import train
from tests.report.fakes import fake_run
from tests.test_compare import experiment
from tests.test_train import make_config

SCORES = [1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("train", "eval_", "named"),
    [
        ({"max_steps": 50}, {}, "train.max_steps"),
        ({"batch_size": 16}, {}, "train.batch_size"),
        ({"evals": 8}, {}, "train.evals"),
        ({}, {"num_beams": 4}, "eval.num_beams"),
        ({}, {"max_test": 10}, "eval.max_test"),
    ],
)
def test_an_entry_cannot_change_the_budget_or_the_scoring_silently(tmp_path, copy_task, train, eval_, named):
    entry = {"name": "lora", "train": train, "eval": eval_}
    path = experiment(tmp_path, copy_task, methods=[{"label": "zero_shot", "name": "none"}, entry])
    with pytest.raises(PeftlabError, match=rf"methods\[1\] \(lora\): {named}.*override: <reason>"):
        run_configs(load_compare(path), "exp.yaml")


def test_an_entry_may_tune_its_own_optimisation(tmp_path, copy_task):
    entry = {"name": "lora", "train": {"lr": 3e-3, "warmup_ratio": 0.2, "weight_decay": 0.01}}
    path = experiment(tmp_path, copy_task, methods=[entry])
    (_, cfg), *_ = run_configs(load_compare(path), "exp.yaml")
    assert cfg["train"]["lr"] == 3e-3 and "override" not in cfg


def test_a_stated_override_runs_and_the_report_marks_its_row(tmp_path, copy_task):
    entry = {"name": "lora", "eval": {"num_beams": 4}, "override": "beam search is how this method is used"}
    path = experiment(tmp_path, copy_task, methods=[entry])
    (_, cfg), *_ = run_configs(load_compare(path), "exp.yaml")
    assert cfg["override"] == "beam search is how this method is used" and cfg["eval"]["num_beams"] == 4

    root = tmp_path / "cmp"
    fake_run(root, "zero_shot-s0", label="zero_shot", method="none", seed=0, example_scores=SCORES)
    d = fake_run(root, "lora-s0", label="lora", method="lora", seed=0, example_scores=SCORES)
    config = yaml.safe_load((d / "config.yaml").read_text())
    (d / "config.yaml").write_text(yaml.safe_dump({**config, "override": cfg["override"]}))
    write_report(root)
    board = (root / "leaderboard.md").read_text()
    assert "| lora † |" in board and "† lora: settings differ from the comparison's: beam search" in board
    assert "zero_shot †" not in board
    rows = {r["label"]: r for r in json.loads((root / "leaderboard.json").read_text())}
    assert rows["lora"]["override"] == cfg["override"] and rows["zero_shot"]["override"] is None


def test_the_report_refuses_to_average_seeds_of_different_settings(tmp_path):
    fake_run(tmp_path, "lora-s0", label="lora", method="lora", seed=0, example_scores=SCORES)
    d = fake_run(tmp_path, "lora-s1", label="lora", method="lora", seed=1, example_scores=SCORES, batch_size=16)
    with pytest.raises(
        PeftlabError, match=r"label 'lora'.*differ in more than the seed: train\.batch_size \(8 vs 16\)"
    ):
        compare_runs(load_runs(tmp_path))
    assert d.is_dir()


def test_the_report_refuses_to_rank_runs_scored_on_different_examples(tmp_path):
    a = fake_run(tmp_path, "full-s0", label="full", method="full", seed=0, example_scores=SCORES)
    b = fake_run(tmp_path, "lora-s0", label="lora", method="lora", seed=0, example_scores=SCORES[:3])
    for d, ids in ((a, "abcd"), (b, "abc")):
        s = json.loads((d / "summary.json").read_text())
        (d / "summary.json").write_text(json.dumps({**s, "test_ids_sha256": ids}))
    with pytest.raises(
        PeftlabError, match=r"task sql_demo: these runs scored different test examples.*full-s0 \(4 examples\)"
    ):
        compare_runs(load_runs(tmp_path))


def test_a_run_records_the_hash_of_its_scored_ids(tmp_path, copy_task):
    run_dir = train(make_config(tmp_path, copy_task, "tiny-gpt-neo", {"name": "none"}))
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["test_ids_sha256"] == hashlib.sha256(b"test-0\ntest-1").hexdigest()


def test_a_slow_gold_query_is_kept_not_dropped(tmp_path, monkeypatch):
    """Whether an example is scored must not depend on the machine's speed on the day."""
    import sqlite3

    from peftlab.tasks import base, sql_exec
    from peftlab.tasks.base import Example

    db = tmp_path / "t.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    calls = []

    def slow_then_fine(path, sql, timeout_s=2.0, max_rows=10000):
        calls.append(timeout_s)
        if "missing" in sql:
            raise sql_exec.SQLError("query failed: no such table: missing")
        if timeout_s < sql_exec.GOLD_TIMEOUT_S:
            raise sql_exec.SQLTimeout(f"query timed out after {timeout_s:g}s")
        return [(1,)]

    monkeypatch.setattr(sql_exec, "run_readonly", slow_then_fine)
    monkeypatch.setattr(base, "run_readonly", slow_then_fine, raising=False)
    examples = [
        Example(id="a", prompt="q", target="SELECT x FROM t", references=["SELECT x FROM t"], database=str(db)),
        Example(
            id="b", prompt="q", target="SELECT x FROM missing", references=["SELECT x FROM missing"], database=str(db)
        ),
    ]
    kept = base._runnable(examples, "test", log=lambda *_: None)
    assert [e.id for e in kept] == ["a"]  # the broken gold query is dropped, the slow one kept
    assert set(calls) == {sql_exec.GOLD_TIMEOUT_S}
    # Scoring: the gold query gets the long limit (no "gold query failed"); a slow prediction is wrong.
    calls.clear()
    assert not sql_exec.execution_match(db, "SELECT x FROM t", "SELECT x FROM t", timeout_s=2.0)
    assert calls == [sql_exec.GOLD_TIMEOUT_S, 2.0]
