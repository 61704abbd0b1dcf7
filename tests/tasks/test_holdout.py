"""Validation held out of train must be as disjoint from train as the task's test is: no held-out
input inside a training input or the other way round (SST-2's training rows are phrases cut from
the same sentences), and whole databases for cross-database text-to-SQL (Spider)."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import string
from pathlib import Path

import pytest

from peftlab.config import TaskConfig
from peftlab.data.readers import read_rows
from peftlab.errors import PeftlabError
from peftlab.tasks.base import SPLITS, build_task
from peftlab.tasks.catalog import catalog, resolve_task
from peftlab.tasks.holdout import hold_out
from tests.conftest import SHARED_DATA

VOCAB = [f"w{i}" for i in range(40)] + ["the", "a", "film", "is", "not", "good", ",", "."]


def words(text: str) -> str:
    """The test's own reading of 'word for word': lower case, punctuation split off, padded."""
    return " " + " ".join(re.findall(r"\w+|[^\w\s]", text.lower())) + " "


def phrase_rows(n_sentences: int, seed: int = 0) -> list[str]:
    """SST-2's shape: every sentence, and phrases cut from it (down to single words)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_sentences):
        sentence = [rng.choice(VOCAB) for _ in range(8)]
        out.append(" ".join(sentence))
        for length in (1, 3, 5):
            start = rng.randrange(0, 8 - length + 1)
            out.append(" ".join(sentence[start : start + length]))
    return out


def fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def text_fields(spec: dict) -> list[str]:
    computed = {"schema"} | ({"options"} if spec.get("choices_field") else set())
    return sorted(fields(spec["input_template"]) - computed)


def target(spec: dict, k: int):
    words_ = spec.get("label_words")
    if spec.get("output_type") == "classify":
        return list(words_)[k % len(words_)]
    if spec.get("output_type") == "multiple_choice":
        return "A"
    return "SELECT count(*) FROM t" if spec.get("database") else f"summary {k}"


def database_values(spec: dict, split: str, k: int) -> dict:
    """Rows of a per-example database task: train spread over 6 databases, test on 2 unseen ones
    (Spider: test databases never appear in training)."""
    names = fields(spec.get("database") or "")
    value = f"test_db{k % 2}" if split == "test" else f"db{k % 6}"
    return dict.fromkeys(names, value)


def make_database(folder: Path, spec: dict, row: dict) -> None:
    path = folder / spec["database"].format(**row)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x INT)")
        conn.commit()
        conn.close()


def synthetic_rows(spec: dict, split: str, folder: Path) -> list[dict]:
    rows = []
    for k, text in enumerate(phrase_rows(30 if split == "train" else 4, seed=SPLITS.index(split))):
        row = {"uid": f"{split}-{k}", **dict.fromkeys(text_fields(spec), text), spec["target_field"]: target(spec, k)}
        if spec.get("choices_field"):
            row[spec["choices_field"]] = ["alpha", "beta", "gamma", "delta"]
        row.update(database_values(spec, split, k))
        if spec.get("database"):
            make_database(folder, spec, row)
        rows.append(row)
    return rows


def layouts(spec: dict) -> list[tuple[str, ...]]:
    """The split layouts a packaged task reads: its local files and its hub splits."""
    out = []
    if spec.get("local_files"):
        out.append(tuple(sorted(spec["local_files"])))
    if spec.get("hub"):
        out.append(tuple(sorted(spec.get("hub_splits") or SPLITS)))
    return out


# Every packaged (task, split layout) whose validation is held out of train.
HELD_OUT = sorted(
    {
        (name, layout)
        for name, spec in catalog().items()
        if spec.get("reader", "rows") == "rows"
        for layout in layouts(spec)
        if "train" in layout and "validation" not in layout
    }
)


def build(folder: Path, spec: dict, layout, **task):
    folder.mkdir(parents=True, exist_ok=True)
    for split in layout:
        rows = synthetic_rows(spec, split, folder)
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    names = {s: f"{s}.jsonl" for s in layout}
    cfg = TaskConfig(
        **resolve_task(
            {"name": spec["name"], "data_dir": str(folder), "local_files": names, "id_field": "uid", **task}, "test"
        )
    )
    log: list[str] = []
    return build_task(cfg, log=log.append), cfg, log


def inputs(folder: Path, spec: dict, layout) -> dict[str, str]:
    """Example id -> its input text (the template's fields, as in the row)."""
    out = {}
    for split in layout:
        for line in (folder / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            out[row["uid"]] = words("\n".join(str(row[f]) for f in text_fields(spec)))
    return out


def assert_text_disjoint(validation: list[str], train: list[str]) -> None:
    for v in validation:
        for t in train:
            assert v not in t, f"validation input {v!r} inside training input {t!r}"
            assert t not in v, f"training input {t!r} inside validation input {v!r}"


def test_the_catalog_has_held_out_tasks_to_check():
    assert {"sst2", "spider", "ag_news"} <= {name for name, _ in HELD_OUT}


@pytest.mark.parametrize(("name", "layout"), HELD_OUT, ids=[f"{n}-{'+'.join(s)}" for n, s in HELD_OUT])
def test_every_packaged_held_out_validation_is_disjoint_from_train(tmp_path, name, layout):
    spec = catalog()[name]
    task, _, log = build(tmp_path, spec, layout)
    text = inputs(tmp_path, spec, layout)
    validation, train = task.split("validation"), task.split("train")
    assert_text_disjoint([text[e.id] for e in validation], [text[e.id] for e in train])
    if spec.get("database") and fields(spec["database"]):  # cross-database: test databases are unseen in train
        assert not {e.database for e in validation} & {e.database for e in train}
    assert any(re.search(r"\d+ training rows? dropped", line) for line in log), log


def test_sst2_phrases_cut_from_the_same_sentences_stay_on_one_side(tmp_path):
    spec = catalog()["sst2"]
    task, _, log = build(tmp_path, spec, ("test", "train"))
    text = inputs(tmp_path, spec, ("test", "train"))
    validation, train = [text[e.id] for e in task.split("validation")], [text[e.id] for e in task.split("train")]
    assert len(validation) == 12  # a tenth of the 120 training rows, whole sentences
    assert all(len(v.split()) == 8 for v in validation)
    assert_text_disjoint(validation, train)
    dropped = int(re.search(r"(\d+) training rows? dropped", " ".join(log)).group(1))
    assert dropped >= 3 * len(validation)  # at least the phrases cut from each held-out sentence
    assert len(train) == 120 - len(validation) - dropped
    again, _, _ = build(tmp_path / "again", spec, ("test", "train"))  # seeded: the same every time
    assert [e.prompt for e in again.split("validation")] == [e.prompt for e in task.split("validation")]


def test_spider_holds_out_whole_databases_unless_told_text_only(tmp_path):
    spec = catalog()["spider"]
    task, _, log = build(tmp_path / "auto", spec, ("test", "train"))
    held = {e.database for e in task.split("validation")}
    assert held and not held & {e.database for e in task.split("train")}
    assert "whole databases" in " ".join(log)
    _, _, log = build(tmp_path / "text", spec, ("test", "train"), hold_out_by="text")
    assert "whole databases" not in " ".join(log)


def test_holding_out_databases_needs_a_database_per_row(tmp_path):
    spec = {**catalog()["ag_news"], "name": "ag_news"}
    with pytest.raises(PeftlabError, match=r"task.hold_out_by: 'database' needs task.database to name a row field"):
        build(tmp_path, spec, ("test", "train"), hold_out_by="database")


@pytest.mark.skipif(not (SHARED_DATA / "sst2").is_dir(), reason="needs ../shared/data/sst2")
def test_real_sst2_held_out_sentences_share_no_phrase_with_train():
    files = {s: str(SHARED_DATA / "sst2" / f"{s}.jsonl") for s in ("train", "test")}
    cfg = TaskConfig(**resolve_task({"name": "sst2", "data_files": files}, "test"))
    held = hold_out(cfg, {s: read_rows(p) for s, p in files.items()}, lambda split: files[split])
    validation = [words(r["sentence"]) for r in held.validation]
    train = [words(r["sentence"]) for r in held.train]
    assert len(validation) == 500 and len(train) + held.dropped == 67349 - 500
    sample = validation[::10]  # 50 of them against all ~61k training inputs, every pair
    assert not [(v, t) for v in sample for t in train if v in t or t in v]
