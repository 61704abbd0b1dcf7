"""Tests for the built-in text-to-SQL demo: database, gold queries and held-out design."""

import re

import pytest

from peftlab.tasks.sql_demo import (
    CITIES,
    DEPARTMENTS,
    HELDOUT_CITIES,
    HELDOUT_DEPARTMENTS,
    SCHEMA,
    build_database,
    make_examples,
    prompt,
)
from peftlab.tasks.sql_exec import run_readonly


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_database(tmp_path_factory.mktemp("sql") / "demo.sqlite")


@pytest.fixture(scope="module")
def splits():
    return make_examples()


def _skeleton(sql):
    """Gold SQL with literals blanked: identifies the intent from the data alone."""
    return re.sub(r"\b\d+\b", "N", re.sub(r"'[^']*'", "'?'", sql))


def _mentions(question, value):
    return re.search(rf"\b{re.escape(value)}\b", question) is not None


def test_sizes_fields_and_distinct_questions(splits):
    assert {k: len(v) for k, v in splits.items()} == {"train": 400, "validation": 32, "test": 64}
    seen = {}
    for name, items in splits.items():
        for x in items:
            assert {"id", "question", "sql", "template"} <= set(x)
            assert x["question"] not in seen, (x["question"], name, seen.get(x["question"]))
            seen[x["question"]] = name
    ids = [x["id"] for items in splits.values() for x in items]
    assert len(set(ids)) == len(ids)


def test_deterministic_for_a_seed(splits):
    assert make_examples(0) == splits
    assert make_examples(1) != splits


def test_every_gold_query_runs_and_is_non_empty(db, splits):
    for items in splits.values():
        for x in items:
            rows = run_readonly(db, x["sql"])
            assert 1 <= len(rows) <= 15, x
            assert rows != [(0,)] and rows != [(None,)], x


def test_prompt_is_short_and_contains_schema(splits):
    x = splits["test"][0]
    p = prompt(x["question"])
    assert SCHEMA in p and p.endswith(x["question"])
    # Rough token budget for a 135M model: ~4 characters per token, prompt + SQL < ~90 tokens.
    assert max(len(prompt(x["question"])) + len(x["sql"]) for items in splits.values() for x in items) < 300


def test_database_is_deterministic_and_kept(tmp_path):
    a = build_database(tmp_path / "a" / "demo.sqlite")
    b = build_database(tmp_path / "b" / "demo.sqlite")
    assert a.read_bytes() == b.read_bytes()
    stat = a.stat()
    assert build_database(a) == a
    assert a.stat().st_mtime_ns == stat.st_mtime_ns and a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in a.parent.iterdir()) == ["demo.sqlite"]  # no temp left over


def test_invalid_file_is_rebuilt(tmp_path):
    good = build_database(tmp_path / "good.sqlite").read_bytes()
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database")
    assert build_database(bad).read_bytes() == good


def test_database_content(db):
    rows = run_readonly(db, "SELECT name, department, city, salary, hired FROM employees")
    assert 60 <= len(rows) <= 80
    assert len({r[0] for r in rows}) == len(rows)
    assert all(30000 <= r[3] <= 150000 and r[3] % 1000 == 0 for r in rows)
    assert all(2005 <= r[4] <= 2024 for r in rows)
    assert {r[1] for r in rows} == set(DEPARTMENTS) and {r[2] for r in rows} == set(CITIES)
    for i, values in [(1, DEPARTMENTS), (2, CITIES)]:
        assert min(sum(r[i] == v for r in rows) for v in values) >= 4


def test_heldout_phrasings(splits):
    """(a) every trained intent has a phrasing seen only in validation and test."""
    train_templates = {x["template"] for x in splits["train"]}
    train_skeletons = {_skeleton(x["sql"]) for x in splits["train"]}
    for split in ("validation", "test"):
        new = {_skeleton(x["sql"]) for x in splits[split] if x["template"] not in train_templates}
        assert train_skeletons <= new, split


def test_heldout_values(db, splits):
    """(b) some departments/cities exist in the database but only in eval questions."""
    values = HELDOUT_DEPARTMENTS + HELDOUT_CITIES
    assert values
    for v in values:
        assert run_readonly(db, f"SELECT COUNT(*) FROM employees WHERE '{v}' IN (department, city)")[0][0] > 0
        assert not any(_mentions(x["question"], v) or v in x["sql"] for x in splits["train"])
        assert any(_mentions(x["question"], v) for x in splits["test"]), v
    assert any(_mentions(x["question"], v) for x in splits["validation"] for v in values)


def test_heldout_intents_are_recombinations(splits):
    """(c) some SQL skeletons never appear in train, but both of their halves do."""
    train = {_skeleton(x["sql"]) for x in splits["train"]}
    for split in ("validation", "test"):
        held = {_skeleton(x["sql"]) for x in splits[split]} - train
        assert held, split
        for sk in held:
            head, tail = sk.split(" WHERE ", 1)
            assert any(t.startswith(head + " WHERE ") for t in train), sk
            assert any(t.endswith(" WHERE " + tail) for t in train), sk


def test_every_eval_item_is_novel(splits):
    """Eval questions are not just train questions with new numbers: each has a new phrasing,
    a held-out value, or a held-out intent."""
    train_templates = {x["template"] for x in splits["train"]}
    train_skeletons = {_skeleton(x["sql"]) for x in splits["train"]}
    values = HELDOUT_DEPARTMENTS + HELDOUT_CITIES
    for x in splits["validation"] + splits["test"]:
        assert (
            x["template"] not in train_templates
            or any(_mentions(x["question"], v) for v in values)
            or _skeleton(x["sql"]) not in train_skeletons
        ), x
