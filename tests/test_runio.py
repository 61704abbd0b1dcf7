"""The run folder's readers: one JSONL rule, one predictions.csv reader, one reference separator."""

from __future__ import annotations

import json

import pytest

from peftlab.errors import PeftlabError
from peftlab.evaluation.score import read_predictions
from peftlab.report.runs import load_run
from peftlab.rundir.runio import REFERENCE_SEPARATOR, read_jsonl, read_predictions_csv, write_predictions
from peftlab.tasks.base import Example


def test_a_corrupt_complete_line_is_named_but_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, oops}\n{"step": 3}\n')
    with pytest.raises(PeftlabError, match=r"metrics\.jsonl, line 2: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"step": 1}\n{"step": 2, "lo')
    assert read_jsonl(path) == [{"step": 1}]


def test_written_references_come_back_through_every_reader(tmp_path):
    examples = [Example("a", "Summarize: x", "one", ["one", "two"]), Example("b", "Summarize: y", "three", ["three"])]
    write_predictions(tmp_path / "predictions.csv", examples, ["uno", "tres"], [0.5, 1.0])
    rows = read_predictions_csv(tmp_path / "predictions.csv")
    assert rows[0]["reference"] == f"one{REFERENCE_SEPARATOR}two"
    assert read_predictions(tmp_path / "predictions.csv") == (["uno", "tres"], [["one", "two"], ["three"]])
    summary = {"run": "r", "method": "lora", "primary_metric": "rougeL", "task": "t", "test": {"rougeL": 0.5}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert [p.score for p in load_run(tmp_path).predictions] == [0.5, 1.0]


def test_a_predictions_file_without_a_column_is_named(tmp_path):
    path = tmp_path / "predictions.csv"
    path.write_text("id,input,refrence,prediction\n1,x,y,z\n")
    with pytest.raises(PeftlabError, match="missing column 'reference'.*did you mean 'refrence'"):
        read_predictions_csv(path)
