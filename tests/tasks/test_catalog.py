"""Every packaged task: its YAML loads from local data (../shared/data, or a fixture written here in
the dataset's own hub format where there is none), and a zero-shot eval runs on a tiny model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from peftlab.config import load_config
from peftlab.tasks.base import build_task
from peftlab.tasks.catalog import catalog
from peftlab.tasks.sql_exec import execution_match, run_readonly
from peftlab.training.train import train
from tests.conftest import SHARED_DATA


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def splits(folder: Path, make, names=("train", "validation", "test"), n=6) -> Path:
    # Each split's inputs name the split: a training input that is a test input would be dropped (task.dedupe).
    for split in names:
        write_jsonl(folder / f"{split}.jsonl", [make(split, i) for i in range(n)])
    return folder


TOPICS = ["world", "sports", "business", "science"]


def race_row(split, i):
    return {
        "example_id": f"{split}{i // 2}.txt",
        "article": f"Tom has {i} red apples and a {split} dog.",
        "question": "What does Tom have?",
        "options": [f"{i} red apples", "a cat", "blue pears", "a car"],
        "answer": "A",
    }


def wikisql_row(split, i):
    table = {
        "id": f"1-{i % 2}",
        "header": ["Player", "Goals"],
        "types": ["text", "real"],
        "rows": [["Ann", "3"], ["Bob", "5"], ["Cy", "5"]],
    }
    return {
        "phase": 1,
        "question": f"How many goals did Ann score ({split} {i})?",
        "table": table,
        "sql": {"sel": 1, "agg": 0, "conds": {"column_index": [0], "operator_index": [0], "condition": ["ann"]}},
    }


def spider_fixture(folder: Path) -> Path:
    for db_id, table in (
        ("shop", "CREATE TABLE item (name TEXT, price REAL)"),
        ("zoo", "CREATE TABLE animal (name TEXT, legs INT)"),
    ):
        path = folder / "database" / db_id / f"{db_id}.sqlite"
        path.parent.mkdir(parents=True)
        conn = sqlite3.connect(path)
        conn.execute(table)
        conn.execute(f"INSERT INTO {table.split()[2]} VALUES ('a', 1), ('b', 2)")
        conn.commit()
        conn.close()
    gold = {"shop": "SELECT name FROM item WHERE price > 1", "zoo": "SELECT count(*) FROM animal"}
    return splits(
        folder,
        lambda s, i: {"db_id": ["shop", "zoo"][i % 2], "question": f"{s} q{i}", "query": gold[["shop", "zoo"][i % 2]]},
    )


FIXTURES = {
    "samsum": lambda d: splits(
        d, lambda s, i: {"id": f"{s}{i}", "dialogue": f"Ann: hi {s} {i}\nBob: hello", "summary": "Ann greets Bob."}
    ),
    "cnn_dailymail": lambda d: splits(
        d, lambda s, i: {"id": f"{s}{i}", "article": f"A storm hit {s} {i}.", "highlights": f"Storm hits town {i}."}
    ),
    "ag_news": lambda d: splits(
        d, lambda s, i: {"text": f"{TOPICS[i % 4]} {s} news {i}", "label": i % 4}, names=("train", "test"), n=40
    ),
    "tweet_eval": lambda d: splits(d, lambda s, i: {"text": f"{s} tweet {i}", "label": i % 3}),
    "race": lambda d: splits(d, race_row),
    "race_distractors": lambda d: splits(d, race_row),
    "wikisql": lambda d: splits(d, wikisql_row),
    "spider": spider_fixture,
}
SHARED = {"dialogsum", "emotion", "sst2", "geoquery", "commonsense_qa"}


def data_dir(name: str, tmp_path: Path) -> Path:
    if name in SHARED:
        folder = SHARED_DATA / name
        assert folder.is_dir(), f"{folder} is missing: the tests read the shared datasets from there"
        return folder
    return FIXTURES[name](tmp_path / name)


def test_every_packaged_task_has_a_local_data_test():
    assert set(catalog()) == SHARED | set(FIXTURES)


def config(name: str, tmp_path: Path, **task):
    cfg = {
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-t5"},
        "method": {"name": "none"},
        "task": {"name": name, "data_dir": str(data_dir(name, tmp_path)), "max_new_tokens": 8, **task},
        "eval": {"max_test": 4, "batch_size": 4},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


@pytest.mark.parametrize("name", sorted(SHARED | set(FIXTURES)))
def test_packaged_task_runs_zero_shot_eval_on_a_tiny_model(name, tmp_path):
    cfg = config(name, tmp_path)
    task = build_task(cfg.task)
    run_dir = train(cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_examples"] == min(4, len(task.split("test")))
    assert 0.0 <= summary["test"][task.primary] <= 1.0
    assert summary["primary_metric"] == task.primary
    import csv

    with (run_dir / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    examples = task.split("test")[:4]
    assert [r["id"] for r in rows] == [e.id for e in examples]
    if task.output_type == "classify":  # constrained: never an invalid label
        assert all(r["prediction"] in task.label_words for r in rows)
    if task.output_type == "multiple_choice":
        assert all(r["prediction"] in e.choices for r, e in zip(rows, examples))


def test_dialogsum_test_examples_carry_all_three_references(tmp_path):
    task = build_task(config("dialogsum", tmp_path).task)
    test = task.split("test")
    assert len(test) == 500 and all(len(e.references) == 3 for e in test)
    assert all(len(e.references) == 1 for e in task.split("train")[:50])


def test_hub_style_duplicate_rows_merge_into_one_multi_reference_example(tmp_path):
    rows = [{"fname": "t0", "dialogue": "A: hi", "summary": s} for s in ("one", "two", "three")]
    folder = splits(tmp_path / "d", lambda s, i: {"fname": f"{s}{i}", "dialogue": f"{s} {i}", "summary": "y"})
    write_jsonl(folder / "test.jsonl", rows)
    task = build_task(config("dialogsum", tmp_path, data_dir=str(folder)).task)
    assert [(e.id, e.references) for e in task.split("test")] == [("t0", ["one", "two", "three"])]


def test_geoquery_fills_placeholders_and_gold_sql_runs(tmp_path):
    task = build_task(config("geoquery", tmp_path).task)
    sizes = {s: len(task.split(s)) for s in ("train", "validation", "test")}
    assert 870 <= sum(sizes.values()) <= 877 and min(sizes.values()) > 0  # train keeps all; scored splits drop
    # the few whose gold SQL fails on the database
    test = task.split("test")
    assert not any("state_name0" in e.prompt.split("Question:")[1] or "state_name0" in e.target for e in test)
    assert "CREATE TABLE" in test[0].prompt  # the schema is part of the prompt
    assert all(execution_match(e.database, ref, ref) for e in test for ref in e.references)


def test_geoquery_query_split_holds_out_whole_queries(tmp_path):
    task = build_task(config("geoquery", tmp_path, reader_options={"split_by": "query"}).task)
    train_sql = {r for e in task.split("train") for r in e.references}
    assert not any(r in train_sql for e in task.split("test") for r in e.references)


def test_wikisql_structures_become_sql_that_runs_on_the_built_tables(tmp_path):
    task = build_task(config("wikisql", tmp_path).task)
    e = task.split("test")[0]
    assert e.target == 'SELECT "Goals" FROM t_1_0 WHERE "Player" = \'ann\''
    assert run_readonly(e.database, e.target) == [(3.0,)]  # 'ann' finds 'Ann': WikiSQL values are lower-cased
    assert "CREATE TABLE t_1_0" in e.prompt and "t_1_1" not in e.prompt  # only this example's table


def test_spider_prompt_shows_each_examples_own_database_schema(tmp_path):
    task = build_task(config("spider", tmp_path).task)
    shop, zoo = task.split("test")[:2]
    assert "CREATE TABLE item" in shop.prompt and "animal" not in shop.prompt
    assert "CREATE TABLE animal" in zoo.prompt and shop.database != zoo.database
    assert task.score(["SELECT name FROM item WHERE price >= 2", "SELECT 2"], [shop, zoo])["execution_accuracy"] == 1.0


def test_race_letter_answers_and_distractor_targets(tmp_path):
    mc = build_task(config("race", tmp_path).task).split("test")[0]
    assert mc.target == mc.choices[0] and mc.target.endswith("red apples")
    dg = build_task(config("race_distractors", tmp_path).task)
    assert len(dg.split("train")) == 6 * 3  # one training example per distractor
    t = dg.split("test")[0]
    assert t.references == ["a cat", "blue pears", "a car"] and "red apples" not in " ".join(t.references)
    assert "Correct answer: 0 red apples" in t.prompt
    assert len({e.id for e in dg.split("test")}) == 6  # questions sharing an article keep distinct ids


def test_missing_validation_is_held_out_of_train_not_test(tmp_path):
    task = build_task(config("ag_news", tmp_path).task)
    train_ids = {e.prompt for e in task.split("train")}
    val = task.split("validation")
    assert len(val) == 4 and len(task.split("train")) == 36 and not train_ids & {e.prompt for e in val}
    again = build_task(config("ag_news", tmp_path / "again").task)
    assert [e.prompt for e in again.split("validation")] == [e.prompt for e in val]  # seeded


def test_k_shot_prepends_the_same_seeded_demonstrations(tmp_path):
    base = build_task(config("tweet_eval", tmp_path).task)
    task = build_task(config("tweet_eval", tmp_path, shots=2).task)
    test = task.split("test")
    demos = test[0].prompt[: -len(base.split("test")[0].prompt)]
    assert demos.count("Answer with one word.") == 2
    assert all(e.prompt.startswith(demos) for e in test + task.split("validation"))
    assert len(task.split("train")) == len(base.split("train")) - 2  # shown demos are not trained on
    other = build_task(config("tweet_eval", tmp_path, shots=2, shots_seed=1).task)
    assert other.split("test")[0].prompt != test[0].prompt


def test_reader_option_typo_is_named(tmp_path):
    from peftlab.errors import PeftlabError

    with pytest.raises(PeftlabError, match="split_by.*allowed: question, query"):
        build_task(config("geoquery", tmp_path, reader_options={"split_by": "random"}).task)


def test_task_name_alone_pulls_the_packaged_definition(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: emotion\nmethod: {name: none}\n")
    cfg = load_config(path)
    assert cfg.task.output_type == "classify" and cfg.task.hub == "dair-ai/emotion"
    assert cfg.task.label_words[0] == "sadness"
