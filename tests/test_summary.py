"""summary.json as a RunSummary: the same keys on disk, older folders read with defaults, bad
files named by file and field."""

from __future__ import annotations

import json

import pytest

from peftlab.errors import PeftlabError
from peftlab.report.aggregate import COSTS
from peftlab.report.runs import load_run
from peftlab.rundir.summary import BudgetLimit, Hardware, LaunchInfo, RunSummary
from tests.report.fakes import fake_run

# The keys train.py writes, in its order (those of earlier versions, and later ones after them).
KEYS = [
    "run",
    "method",
    "trains",
    "label",
    "task",
    "model",
    "seed",
    "compute_dtype",
    "primary_metric",
    "higher_is_better",
    "test",
    "test_examples",
    "test_ids_sha256",
    "best_validation",
    "best_step",
    "budget",
    "steps",
    "processes",
    "launch",
    "flops",
    "flops_per_step",
    "examples_seen",
    "tokens_seen",
    "lr",
    "trainable_params",
    "total_params",
    "trainable_pct",
    "adapter_bytes",
    "train_seconds",
    "eval_seconds",
    "wall_seconds",
    "train_examples_per_s",
    "train_tokens_per_s",
    "peak_memory_bytes",
    "run_peak_memory_bytes",
    "peak_memory_kind",
    "frozen_bf16_params",
    "forgetting",
    "inference",
    "truncated_inputs",
    "skipped_long_train_examples",
    "overlap",
    "deviations",
    "finished_at",
    "python",
    "versions",
    "untested_versions",
    "hardware",
]
MINIMAL = {"run": "r", "method": "lora", "task": "t", "primary_metric": "rougeL", "test": {"rougeL": 0.5}}


def full_summary() -> RunSummary:
    return RunSummary(
        run="sql_demo-lora",
        method="lora",
        trains=True,
        label="lora-r4",
        task="sql_demo",
        model="tiny-gpt-neo",
        seed=0,
        compute_dtype="float32",
        primary_metric="exact_match",
        higher_is_better=True,
        test={"exact_match": 0.5, "seconds": 1.25},
        test_examples=2,
        test_ids_sha256="0" * 64,
        best_validation={"exact_match": 1.0, "seconds": 0.5},
        best_step=6,
        budget=BudgetLimit(kind="steps", amount=12, spent=12),
        steps=12,
        processes=1,
        launch=LaunchInfo(launcher="local", host="h", device="AMD EPYC", slot="1", concurrency=2),
        flops=0,
        flops_per_step=0.0,
        examples_seen=48,
        tokens_seen=1000,
        lr=1e-3,
        trainable_params=10,
        total_params=1000,
        trainable_pct=1.0,
        adapter_bytes=2048,
        train_seconds=3.5,
        train_examples_per_s=13.7,
        train_tokens_per_s=285.7,
        peak_memory_bytes=4_000_000,
        run_peak_memory_bytes=5_000_000,
        peak_memory_kind="cpu_peak_rss",
        truncated_inputs=0,
        skipped_long_train_examples=0,
        finished_at="2025-01-01T00:00:00+0000",
        python="3.11.7",
        versions={"torch": "2.13.0", "rouge-score": None},
        untested_versions={},
        hardware=Hardware(processor="x86_64", cpu_count=2, cuda=None),
    )


def test_write_then_read_gives_the_same_summary_under_the_same_keys(tmp_path):
    s = full_summary()
    s.write(tmp_path / "summary.json")
    assert RunSummary.read(tmp_path / "summary.json") == s
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert list(on_disk) == KEYS
    assert on_disk["budget"] == {"kind": "steps", "amount": 12, "spent": 12}
    assert on_disk["flops"] == 0 and isinstance(on_disk["flops"], int)  # a number is kept as written
    assert on_disk["hardware"]["cpu_count"] == 2


def test_an_older_summary_without_the_later_keys_reads_with_defaults(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({**MINIMAL, "trainable_params": 0, "from_the_future": 1}))
    s = RunSummary.read(tmp_path / "summary.json")
    assert (s.label, s.trains, s.flops, s.hardware, s.budget, s.untested_versions) == (None,) * 6
    assert s.higher_is_better is True and s.trainable_params == 0
    run = load_run(tmp_path)
    assert (run.label, run.trains, run.seed, run.score) == ("lora", False, None, 0.5)


def test_the_report_fakes_without_label_or_flops_read_back(tmp_path):
    d = fake_run(tmp_path, "old", label=None, method="lora", seed=1, example_scores=[1.0, 0.0], trainable=5)
    s = RunSummary.read(d / "summary.json")
    assert (s.label, s.flops, s.seed, s.hardware.cpu_count) == (None, None, 1, 2)
    assert s.test["execution_accuracy"] == 0.5


def test_a_missing_required_field_names_the_file_and_the_fields(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"run": "r", "task": "t", "test": {"rougeL": 0.5}}))
    with pytest.raises(PeftlabError, match=r"summary\.json: missing field\(s\) method, primary_metric$") as e:
        RunSummary.read(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"test": [0.5]}, "'test': input should be a valid dictionary"),
        ({"test": {"rougeL": "high"}}, "'test.rougeL': input should be a number"),
        ({"seed": "0"}, "'seed': input should be a valid integer"),
        ({"higher_is_better": 1}, "'higher_is_better': input should be a valid boolean"),
        ({"run": 7}, "'run': input should be a valid string"),
        ({"hardware": {"cpu_count": "2"}}, "'hardware.cpu_count': input should be a valid integer"),
    ],
)
def test_a_field_of_the_wrong_type_is_named_with_its_value(tmp_path, change, field):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({**MINIMAL, **change}))
    with pytest.raises(PeftlabError, match=rf"summary\.json: field {field}") as e:
        RunSummary.read(path)
    assert str(path) in str(e.value) and "(got " in str(e.value)


def test_a_file_that_is_not_a_json_object_is_named(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("[1, 2]")
    with pytest.raises(PeftlabError, match=r"summary\.json: expected a JSON object"):
        RunSummary.read(path)
    path.write_text('{"run": ')
    with pytest.raises(PeftlabError, match=r"summary\.json: not valid JSON"):
        RunSummary.read(path)
    with pytest.raises(PeftlabError, match="no such file"):
        RunSummary.read(tmp_path / "missing.json")


def test_the_report_cost_columns_are_summary_fields():
    assert set(COSTS) <= set(RunSummary.model_fields)
