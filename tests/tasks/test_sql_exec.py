"""Tests for the sandboxed SQL runner, result comparison and SQL extraction."""

import hashlib
import sqlite3
import time

import pytest

from peftlab.tasks.sql_exec import SQLError, execution_match, extract_sql, results_match, run_readonly

ROWS = [
    ("Ada Moreno", "Sales", "Oslo", 120000, 2010),
    ("Bruno Novak", "Sales", "Lisbon", 90000, 2015),
    ("Clara Sato", "Legal", "Oslo", 135000, 2020),
    ("Dev Rossi", "Design", "Lisbon", 60000, 2008),
]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE employees (name TEXT, department TEXT, city TEXT, salary INTEGER, hired INTEGER)")
    conn.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?)", ROWS)
    conn.commit()
    conn.close()
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_readonly_returns_tuples(db):
    assert run_readonly(db, "SELECT name FROM employees WHERE salary > 100000 ORDER BY name") == [
        ("Ada Moreno",),
        ("Clara Sato",),
    ]
    # A trailing ';' or comment is still one statement; ';' inside a string is not a separator.
    assert run_readonly(db, "SELECT 1; -- done") == [(1,)]
    assert run_readonly(db, "SELECT name FROM employees WHERE name = 'a;b'") == []


def test_equivalent_queries_match(db):
    assert execution_match(
        db, "SELECT name FROM employees WHERE NOT salary <= 100000", "SELECT name FROM employees WHERE salary > 100000"
    )
    assert not execution_match(
        db, "SELECT name FROM employees WHERE salary >= 90000", "SELECT name FROM employees WHERE salary > 100000"
    )
    # AVG vs hand-made average: float rounding and int/float equality.
    assert execution_match(
        db, "SELECT SUM(salary) * 1.0 / COUNT(*) FROM employees", "SELECT AVG(salary) FROM employees"
    )


def test_order_ignored_without_order_by_respected_with(db):
    gold = "SELECT name FROM employees WHERE city = 'Oslo'"
    assert execution_match(db, gold + " ORDER BY name DESC", gold)
    assert execution_match(db, gold + " ORDER BY name ASC", gold)
    gold_ordered = "SELECT name FROM employees ORDER BY salary DESC LIMIT 3"
    assert execution_match(db, "select name from employees order by -salary limit 3", gold_ordered)
    assert not execution_match(db, "SELECT name FROM employees ORDER BY salary LIMIT 3", gold_ordered)
    # 'order by' inside a string literal does not make the comparison ordered.
    gold_literal = "SELECT name FROM employees WHERE name != 'order by' AND city = 'Oslo'"
    assert execution_match(db, gold + " ORDER BY name DESC", gold_literal)


def test_results_match_multiset_and_floats():
    assert results_match([(1,), (2,), (1,)], [(1,), (1,), (2,)], ordered=False)
    assert not results_match([(1,), (2,), (1,)], [(1,), (1,), (2,)], ordered=True)
    assert not results_match([(1,), (1,), (2,)], [(1,), (2,), (2,)], ordered=False)
    assert results_match([(1 / 3,)], [(0.3333333333,)], ordered=True)
    assert results_match([(85000,)], [(85000.0,)], ordered=True)
    assert not results_match([(1.5,)], [(1.6,)], ordered=True)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM employees",
        "DROP TABLE employees",
        "INSERT INTO employees VALUES ('X', 'Sales', 'Oslo', 1, 2000)",
        "UPDATE employees SET salary = 0",
        "CREATE TABLE t (x)",
        "ATTACH DATABASE 'other.sqlite' AS other",
        "PRAGMA user_version = 7",
        "SELECT 1; DELETE FROM employees",
    ],
)
def test_writes_are_rejected_and_database_unchanged(db, sql):
    before, files = _digest(db), sorted(db.parent.iterdir())
    with pytest.raises(SQLError):
        run_readonly(db, sql)
    assert execution_match(db, sql, "SELECT name FROM employees") is False
    assert _digest(db) == before
    assert sorted(db.parent.iterdir()) == files
    assert sorted(run_readonly(db, "SELECT * FROM employees")) == sorted(ROWS)


def test_two_statements_rejected(db):
    with pytest.raises(SQLError, match="one SQL statement"):
        run_readonly(db, "SELECT 1; SELECT 2")


def test_infinite_recursion_times_out(db):
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    start = time.monotonic()
    with pytest.raises(SQLError, match="timed out"):
        run_readonly(db, sql, timeout_s=0.3)
    assert time.monotonic() - start < 1.3
    assert execution_match(db, sql, "SELECT 1", timeout_s=0.3) is False


def test_row_cap(db):
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
    with pytest.raises(SQLError, match="more than 100 rows"):
        run_readonly(db, sql, max_rows=100)
    assert len(run_readonly(db, sql + " LIMIT 100", max_rows=100)) == 100


def test_errors(db, tmp_path):
    for bad in ["SELEC name FROM employees", "SELECT nope FROM employees", "", "  ;  "]:
        with pytest.raises(SQLError):
            run_readonly(db, bad)
        assert execution_match(db, bad, "SELECT 1") is False
    with pytest.raises(SQLError, match="not found"):
        run_readonly(tmp_path / "missing.sqlite", "SELECT 1")
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(SQLError, match="gold"):
        execution_match(db, "SELECT 1", "SELECT nope FROM employees")


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "```sql\nSELECT name FROM employees WHERE city = 'Oslo';\n```\nThis lists Oslo staff.",
            "SELECT name FROM employees WHERE city = 'Oslo'",
        ),
        ("Here you go:\n```\nSELECT COUNT(*)\nFROM employees\n```", "SELECT COUNT(*)\nFROM employees"),
        ("```sqlite\nSELECT 1", "SELECT 1"),  # unclosed fence (generation cut off)
        (
            "Sure! Here is the query with the answer: select name from employees where "
            "salary > 90000; It returns the well-paid staff.",
            "select name from employees where salary > 90000",
        ),
        ("SELECT name FROM employees WHERE name = 'a;b'; trailing", "SELECT name FROM employees WHERE name = 'a;b'"),
        (
            "The query is:\nSELECT MAX(salary) FROM employees\n\nThis finds the highest salary.",
            "SELECT MAX(salary) FROM employees",
        ),
        ("WITH t AS (SELECT 1 AS x) SELECT x FROM t", "WITH t AS (SELECT 1 AS x) SELECT x FROM t"),
        ("  SELECT 1  ", "SELECT 1"),
        ("", ""),
        ("   \n ", ""),
    ],
)
def test_extract_sql(text, expected):
    assert extract_sql(text) == expected
