"""The tables that hold a fact once: budget kinds and metrics, and what reads them."""

from __future__ import annotations

import typing

import pytest

from peftlab.comparison.compare import CompareConfig
from peftlab.config import TrainConfig
from peftlab.errors import PeftlabError
from peftlab.task_config import Metric
from peftlab.tasks.metrics import METRICS, REGISTRY
from peftlab.tasks.metrics import Metric as MetricEntry
from peftlab.training.budget import BUDGET_KINDS, KINDS


@pytest.mark.parametrize("kind", BUDGET_KINDS, ids=lambda k: k.name)
def test_every_budget_kind_is_a_train_key_and_an_experiment_budget(kind):
    assert TrainConfig(**{kind.config_key: 3}).budget() == (kind.name, 3)
    exp = {"name": "x", "task": {"name": "sql_demo"}, "budget": {kind.name: 3}, "methods": [{"name": "lora"}]}
    assert CompareConfig.model_validate(exp).budget == {kind.name: 3}


def test_an_unknown_budget_kind_names_the_allowed_ones():
    exp = {"name": "x", "task": {"name": "sql_demo"}, "budget": {"hours": 3}, "methods": [{"name": "lora"}]}
    with pytest.raises(Exception, match="steps, epochs, examples, tokens, flops, seconds"):
        CompareConfig.model_validate(exp)


def test_a_run_counts_every_kind_but_epochs():
    assert KINDS == ("steps", "examples", "tokens", "flops", "seconds")


def test_task_configs_accept_exactly_the_registered_metrics():
    assert typing.get_args(Metric) == tuple(REGISTRY)
    assert set(METRICS) == {name for name, m in REGISTRY.items() if not m.needs_database}
    assert REGISTRY["execution_accuracy"].needs_database and REGISTRY["bleu"].primary == "bleu4"


def test_a_metric_needing_a_database_is_refused_without_one(tmp_path):
    from peftlab.config import TaskConfig
    from peftlab.tasks.base import build_task

    (tmp_path / "test.jsonl").write_text('{"q": "a", "sql": "SELECT 1"}\n')
    cfg = TaskConfig(
        name="t",
        data_files={"test": str(tmp_path / "test.jsonl")},
        input_template="{q}",
        target_field="sql",
        metric="execution_accuracy",
    )
    with pytest.raises(PeftlabError, match="execution_accuracy needs task.database"):
        build_task(cfg)


def test_a_registered_metric_scores_a_task(monkeypatch):
    from peftlab.tasks.base import Example, Task

    monkeypatch.setitem(REGISTRY, "length", MetricEntry("length", lambda p, r: {"chars": len(p[0])}, primary="chars"))
    task = Task("t", {}, ["length"], "chars", 8)
    assert task.score(["abcd"], [Example("0", "x", "y", ["y"])]) == {"chars": 4}
