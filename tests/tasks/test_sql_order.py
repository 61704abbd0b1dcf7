"""Execution accuracy compares rows in order only when the gold query's OWN result is ordered: an
ORDER BY at its top level, not one inside a subquery, a CTE, a window or a string literal."""

import sqlite3

import pytest

from peftlab.tasks.sql_exec import execution_match

ROWS = [
    ("Ada", "Sales", 120000),
    ("Bruno", "Sales", 90000),
    ("Clara", "Legal", 135000),
    ("Dev", "Design", 60000),
]
# The three best paid, in name order (a prediction that does not care about the order).
BY_NAME = "SELECT name FROM employees WHERE salary >= 90000 ORDER BY name"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE employees (name TEXT, department TEXT, salary INTEGER)")
    conn.executemany("INSERT INTO employees VALUES (?, ?, ?)", ROWS)
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize(
    "gold",
    [
        # ORDER BY only picks the rows of a LIMIT in the subquery; the outer query is a set.
        "SELECT name FROM (SELECT name FROM employees ORDER BY salary DESC LIMIT 3)",
        "SELECT name FROM employees WHERE name IN (SELECT name FROM employees ORDER BY salary DESC LIMIT 3)",
        "WITH top AS (SELECT name, salary FROM employees ORDER BY salary DESC LIMIT 3) SELECT name FROM top",
        # A window's ORDER BY orders inside the window, not the result.
        "SELECT name FROM (SELECT name, RANK() OVER (ORDER BY salary DESC) AS r FROM employees) WHERE r <= 3",
        # In a string literal it is no clause at all.
        "SELECT name FROM employees WHERE salary >= 90000 AND department <> 'order by salary desc'",
    ],
    ids=["from-subquery", "in-subquery", "cte", "window", "string"],
)
def test_order_by_below_the_top_level_leaves_the_comparison_unordered(db, gold):
    assert execution_match(db, BY_NAME, gold)


@pytest.mark.parametrize(
    "gold",
    [
        "SELECT name FROM (SELECT name, salary FROM employees ORDER BY name LIMIT 3) ORDER BY salary DESC",
        "SELECT name FROM employees WHERE salary >= 90000 ORDER BY (salary) DESC",
        "SELECT name FROM employees WHERE salary > 100000 UNION SELECT 'Bruno' ORDER BY 1 DESC",
    ],
    ids=["after-subquery", "parenthesised-key", "compound"],
)
def test_a_top_level_order_by_keeps_the_comparison_ordered(db, gold):
    assert not execution_match(db, BY_NAME, gold)
