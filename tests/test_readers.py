import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from peftlab.config import load_config
from peftlab.data.readers import read_rows
from peftlab.errors import PeftlabError
from peftlab.tasks.base import build_task

ROWS = [{"id": "a", "text": "first", "label": "one"}, {"id": "b", "text": "second", "label": "two"}]


def test_jsonl_csv_parquet_read_the_same_rows(tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "d.csv").write_text("id,text,label\na,first,one\nb,second,two\n")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.csv", "d.parquet"):
        assert read_rows(tmp_path / name) == ROWS, name


def test_malformed_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(PeftlabError, match=r"bad.jsonl:2: malformed JSON"):
        read_rows(p)


def test_non_utf8_and_missing_file(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("id,text\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(PeftlabError, match="not UTF-8"):
        read_rows(p)
    with pytest.raises(PeftlabError, match="data file not found"):
        read_rows(tmp_path / "nope.jsonl")


def test_task_from_files_maps_fields_and_references(tmp_path, copy_task):
    task = build_task(
        load_config(None, [f"task={yaml.safe_dump(copy_task, default_flow_style=True)}", "train.max_steps=1"]).task
    )
    ex = task.split("test")[0]
    assert ex.id == "test-0" and ex.prompt == "Repeat: grape" and ex.references == ["grape"]


def test_template_field_missing_names_the_row(tmp_path, copy_task):
    copy_task["input_template"] = "Repeat: {wrod}"
    cfg = load_config(None, [f"task={yaml.safe_dump(copy_task, default_flow_style=True)}", "train.max_steps=1"])
    with pytest.raises(
        PeftlabError, match=r"(train|validation|test)\.jsonl row 1: task.input_template uses field 'wrod'"
    ):
        build_task(cfg.task)
