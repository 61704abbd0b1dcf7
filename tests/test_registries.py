"""The tables that hold a fact once: budget kinds, metrics and methods, and what reads them. The
metric and method registries are open: what is registered after import is seen wherever names are
checked, and a name registered twice is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from peftlab.comparison.compare import CompareConfig
from peftlab.config import MethodConfig, TaskConfig, TrainConfig, load_config
from peftlab.errors import PeftlabError
from peftlab.methods import REGISTRY as METHODS
from peftlab.methods import get_method, method_options, register, trainable_parameters
from peftlab.models.tiny import tiny_model
from peftlab.tasks.metrics import METRICS, REGISTRY, register_metric
from peftlab.tasks.metrics import Metric as MetricEntry
from peftlab.training.budget import BUDGET_KINDS, KINDS
from tests.methods import toy_method


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
    for name in REGISTRY:
        assert TaskConfig(metric=name, extra_metrics=[name]).metric == name
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


LENGTH = MetricEntry("length", lambda p, r: {"chars": len(p[0])}, primary="chars")


def test_a_metric_registered_after_import_is_accepted_by_task_configs_and_score(monkeypatch):
    with pytest.raises(ValueError, match="unknown metric 'length'"):
        TaskConfig(metric="length")
    monkeypatch.setitem(REGISTRY, "length", LENGTH)
    assert TaskConfig(metric="length", extra_metrics=["length"]).metric == "length"
    assert "length" in METRICS and METRICS["length"](["abc"], [["x"]]) == {"chars": 3}


def test_an_unknown_metric_names_the_field_the_value_the_closest_name_and_the_allowed(tmp_path):
    allowed = "allowed: rouge, bleu, exact_match, accuracy, execution_accuracy"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"task": {"name": "sql_demo", "metric": "rogue"}}))
    with pytest.raises(PeftlabError) as caught:
        load_config(tmp_path / "c.yaml")
    assert f"task.metric: unknown metric 'rogue' (did you mean 'rouge'?); {allowed} (got 'rogue')" in str(caught.value)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"task": {"name": "sql_demo", "extra_metrics": ["bleu", "blue"]}}))
    with pytest.raises(PeftlabError, match=r"task.extra_metrics.1: unknown metric 'blue' \(did you mean 'bleu'\?\)"):
        load_config(tmp_path / "c.yaml")


def test_a_metric_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="metric 'rouge' is already registered .*rouge.*; give the new metric another"):
        register_metric(MetricEntry("rouge", LENGTH.compute, primary="chars"))
    assert REGISTRY["rouge"].primary == "rougeL"


def test_a_method_name_registered_twice_is_refused():
    with pytest.raises(
        ValueError,
        match="method 'lora' is already registered \\(by peftlab.methods.lora\\); give the new method another name",
    ):
        register(replace(toy_method.METHOD, name="lora"))
    assert METHODS["lora"].apply is not toy_method.METHOD.apply


def test_a_method_registered_after_import_is_a_hybrid_component_with_its_markers():
    # The toy method is registered by tests/conftest.py, after peftlab.methods (and hybrid.py) loaded.
    options = method_options(MethodConfig(name="hybrid", methods=[{"name": "norm_scale"}, {"name": "lora"}]))
    model, _ = tiny_model("tiny-llama")
    model = get_method("hybrid").apply(model, options)
    trainable = set(trainable_parameters(model))
    added = {n for n in trainable if get_method("hybrid").adds(n)}
    assert added == trainable and any(n.endswith("norm_scale") for n in trainable)


def test_a_hybrid_refuses_a_component_that_does_not_apply_before_changing_the_model(monkeypatch):
    picky = replace(toy_method.METHOD, name="picky", applies_to=lambda m: "the model has no X; picky needs X")
    monkeypatch.setitem(METHODS, "picky", picky)
    options = method_options(MethodConfig(name="hybrid", methods=[{"name": "lora"}, {"name": "picky"}]))
    model, _ = tiny_model("tiny-llama")
    message = "method.methods[1]: picky does not apply to this model: the model has no X; picky needs X"
    with pytest.raises(PeftlabError, match=message.replace("[", r"\[").replace("]", r"\]")):
        get_method("hybrid").apply(model, options)
    assert all(p.requires_grad for p in model.parameters())  # nothing was frozen or wrapped
