"""Built-in text-to-SQL demo task over a small SQLite database the package creates itself.

All names, values and phrasings are written for this module. The split is designed so
that a fine-tuned model must generalize, not memorize, to score on test:

(a) every intent has one phrasing that never appears in train;
(b) some department/city values appear only in validation/test questions;
(c) some intents are held out of train entirely, but are recombinations of trained
    parts (e.g. train has AVG over a department and filters on city; test asks AVG in a city).

Validation and test draw from the same held-out pool (validation picks checkpoints,
test is scored once) without sharing any question.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import string
from pathlib import Path

from peftlab.rundir.runio import atomic_sqlite

from .sql_exec import SQLError, run_readonly

__all__ = [
    "SCHEMA",
    "INSTRUCTION",
    "prompt",
    "build_database",
    "make_examples",
    "DEPARTMENTS",
    "CITIES",
    "HELDOUT_DEPARTMENTS",
    "HELDOUT_CITIES",
    "INTENTS",
    "HELDOUT_INTENTS",
]

SCHEMA = "employees(name, department, city, salary, hired)"
INSTRUCTION = f"Table {SCHEMA}. Write one SQLite query that answers: {{question}}"


def prompt(question: str) -> str:
    """The user prompt for one question (kept short: the demo model is 135M parameters)."""
    return INSTRUCTION.replace("{question}", question)


DEPARTMENTS = ("Sales", "Engineering", "Marketing", "Finance", "Support", "Design", "Operations", "Legal")
CITIES = (
    "Lisbon",
    "Oslo",
    "Denver",
    "Austin",
    "Madrid",
    "Boston",
    "Seattle",
    "Chicago",
    "Berlin",
    "Sydney",
    "Dublin",
    "Toronto",
)
HELDOUT_DEPARTMENTS = ("Legal",)
HELDOUT_CITIES = ("Dublin", "Toronto")

_FIRST = (
    "Ada",
    "Bruno",
    "Clara",
    "Dev",
    "Elena",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Luca",
    "Maya",
    "Nico",
    "Olga",
    "Pavel",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wes",
    "Xenia",
    "Yusuf",
    "Zoe",
    "Aiden",
    "Bea",
    "Cyril",
    "Dora",
)
_LAST = (
    "Moreno",
    "Lindqvist",
    "Okafor",
    "Brandt",
    "Castillo",
    "Novak",
    "Haddad",
    "Ferreira",
    "Kowalski",
    "Tanaka",
    "Duarte",
    "Ivanova",
    "Mensah",
    "Rossi",
    "Halloran",
    "Petrov",
    "Sato",
    "Vidal",
    "Engel",
    "Nair",
    "Quiroga",
    "Aalto",
    "Barros",
    "Costa",
)
_PER_DEPARTMENT, _PER_CITY = 9, 6  # 8 x 9 = 12 x 6 = 72 rows: every value has several rows
_MAX_LIST_ROWS = 15  # keep gold lists short enough to read and to generate

TRAIN_SIZE, VALIDATION_SIZE, TEST_SIZE = 400, 32, 64


def _employee_rows() -> list[tuple[str, str, str, int, int]]:
    """The table's rows, fixed by random.Random(0)."""
    rng = random.Random(0)
    n = len(DEPARTMENTS) * _PER_DEPARTMENT
    names = rng.sample([f"{first} {last}" for first in _FIRST for last in _LAST], n)
    departments = [d for d in DEPARTMENTS for _ in range(_PER_DEPARTMENT)]
    cities = [c for c in CITIES for _ in range(_PER_CITY)]
    rng.shuffle(departments)
    rng.shuffle(cities)
    # Distinct salaries: no ties, so "top k by salary" has exactly one right answer.
    salaries = rng.sample(range(30000, 150001, 1000), n)
    hired = [rng.randint(2005, 2024) for _ in range(n)]
    return list(zip(names, departments, cities, salaries, hired))


def _fill(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE employees (name TEXT NOT NULL UNIQUE, department TEXT NOT NULL,"
        " city TEXT NOT NULL, salary INTEGER NOT NULL, hired INTEGER NOT NULL)"
    )
    conn.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?)", _employee_rows())


def _is_valid(path: Path) -> bool:
    try:
        rows = run_readonly(path, "SELECT name, department, city, salary, hired FROM employees")
    except SQLError:
        return False
    return sorted(rows) == sorted(_employee_rows())


def build_database(path: str | Path) -> Path:
    """Create the demo database at ``path`` (deterministic, atomic); keep a valid existing one."""
    path = Path(path)
    if path.is_file() and _is_valid(path):
        return path
    return atomic_sqlite(path, _fill)


# intent -> (gold SQL skeleton, phrasings). The LAST phrasing is held out of train (a).
# City phrasings always carry a location cue ("based in", "office", ...) and department
# phrasings a team cue, so unseen values (b) are still unambiguous.
INTENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "list_department": (
        "SELECT name FROM employees WHERE department = '{dept}'",
        (
            "List the names of employees in the {dept} department.",
            "Who works in the {dept} department?",
            "Show everyone on the {dept} team.",
            "Which people belong to the {dept} team?",
        ),
    ),
    "list_city": (
        "SELECT name FROM employees WHERE city = '{city}'",
        (
            "List the employees based in {city}.",
            "Who works in the {city} office?",
            "Give the names of staff located in {city}.",
            "Name every employee whose city is {city}.",
        ),
    ),
    "count_city": (
        "SELECT COUNT(*) FROM employees WHERE city = '{city}'",
        (
            "How many employees are based in {city}?",
            "Count the staff in the {city} office.",
            "What is the number of employees located in {city}?",
            "How many people work out of the {city} office?",
        ),
    ),
    "avg_salary_department": (
        "SELECT AVG(salary) FROM employees WHERE department = '{dept}'",
        (
            "What is the average salary in the {dept} department?",
            "Find the mean salary of the {dept} team.",
            "On average, how much does the {dept} department pay?",
            "What do people on the {dept} team earn on average?",
        ),
    ),
    "max_salary_city": (
        "SELECT MAX(salary) FROM employees WHERE city = '{city}'",
        (
            "What is the highest salary among employees based in {city}?",
            "Find the top salary paid in the {city} office.",
            "What is the maximum salary for staff located in {city}?",
            "How much does the best-paid person in the {city} office earn?",
        ),
    ),
    "salary_above": (
        "SELECT name FROM employees WHERE salary > {n}",
        (
            "Which employees earn more than {n}?",
            "List the names of people with a salary above {n}.",
            "Who has a salary greater than {n}?",
            "Show everyone who is paid over {n}.",
        ),
    ),
    "hired_in": (
        "SELECT name FROM employees WHERE hired = {year}",
        (
            "Which employees were hired in {year}?",
            "List the people who joined in {year}.",
            "Who was hired in the year {year}?",
            "Name the staff whose hiring year is {year}.",
        ),
    ),
    "count_hired_after": (
        "SELECT COUNT(*) FROM employees WHERE hired > {year}",
        (
            "How many employees were hired after {year}?",
            "Count the people who joined after {year}.",
            "What is the number of staff hired later than {year}?",
            "How many of our employees started after {year}?",
        ),
    ),
    "department_and_city": (
        "SELECT name FROM employees WHERE department = '{dept}' AND city = '{city}'",
        (
            "Who works in the {dept} department in {city}?",
            "List the {dept} team members based in {city}.",
            "Which employees are in the {dept} department and located in {city}?",
            "Name the people from the {dept} team at the {city} office.",
        ),
    ),
    "top_paid": (
        "SELECT name FROM employees ORDER BY salary DESC LIMIT {k}",
        (
            "Who are the {k} highest-paid employees?",
            "List the top {k} earners, highest salary first.",
            "Show the {k} employees with the largest salaries, in order.",
            "Name the {k} best-paid people, from the top down.",
        ),
    ),
    # (c) Held out of train entirely; every phrasing is eval-only. Their parts are trained:
    # COUNT(*) / "... department = ..." and AVG(salary) / "... city = ...".
    "count_department": (
        "SELECT COUNT(*) FROM employees WHERE department = '{dept}'",
        (
            "How many employees are in the {dept} department?",
            "Count the members of the {dept} team.",
            "What is the headcount of the {dept} department?",
        ),
    ),
    "avg_salary_city": (
        "SELECT AVG(salary) FROM employees WHERE city = '{city}'",
        (
            "What is the average salary of employees based in {city}?",
            "Find the mean salary in the {city} office.",
            "On average, how much do staff located in {city} earn?",
        ),
    ),
}
HELDOUT_INTENTS = ("count_department", "avg_salary_city")

_SLOT_VALUES = {
    "dept": DEPARTMENTS,
    "city": CITIES,
    "n": range(100000, 150000, 1000),
    "year": range(2005, 2025),
    "k": range(2, 11),
}


def _usable(rows: list[tuple]) -> bool:
    """Gold must be non-empty, short, and not a NULL/0 aggregate (which wrong SQL hits too)."""
    if not 1 <= len(rows) <= _MAX_LIST_ROWS:
        return False
    return not (len(rows) == 1 and all(v is None or v == 0 for v in rows[0]))


def _pools() -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """All usable (question, sql) pairs per intent, split into train-able and held-out."""
    conn = sqlite3.connect(":memory:")
    _fill(conn)
    train: dict[str, list[dict]] = {}
    held: dict[str, list[dict]] = {}
    try:
        for intent, (sql_t, phrasings) in INTENTS.items():
            slots = sorted({f for _, f, _, _ in string.Formatter().parse(sql_t) if f})
            train[intent], held[intent] = [], []
            for combo in itertools.product(*(_SLOT_VALUES[s] for s in slots)):
                values = dict(zip(slots, combo))
                sql = sql_t.format(**values)
                if not _usable(conn.execute(sql).fetchall()):
                    continue
                new_value = values.get("dept") in HELDOUT_DEPARTMENTS or values.get("city") in HELDOUT_CITIES
                for i, phrasing in enumerate(phrasings):
                    heldout = intent in HELDOUT_INTENTS or new_value or i == len(phrasings) - 1
                    item = {"question": phrasing.format(**values), "sql": sql, "template": phrasing, "intent": intent}
                    (held if heldout else train)[intent].append(item)
    finally:
        conn.close()
    return train, held


def _round_robin(pools: dict[str, list[dict]], n: int, rng: random.Random) -> list[dict]:
    """Take up to n items, one intent at a time, so small intents are not crowded out."""
    queues = [rng.sample(pool, len(pool)) for pool in pools.values()]
    out: list[dict] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop())
    return out


def make_examples(seed: int = 0) -> dict[str, list[dict]]:
    """Deterministic splits: {"train", "validation", "test"} -> [{"id", "question", "sql",
    "template", "intent"}]. The database content is fixed; ``seed`` only changes sampling."""
    rng = random.Random(seed)
    train_pool, held_pool = _pools()
    train = _round_robin(train_pool, TRAIN_SIZE, rng)
    rng.shuffle(train)
    held = _round_robin(held_pool, VALIDATION_SIZE + TEST_SIZE, rng)
    # Walk the held-out items intent by intent and send every third one to validation,
    # so both splits get the same intent mix (within one item per intent).
    held.sort(key=lambda x: list(INTENTS).index(x["intent"]))  # stable: keeps sampled order
    validation = held[::3]
    test = [x for i, x in enumerate(held) if i % 3]
    rng.shuffle(validation)
    rng.shuffle(test)
    splits = {"train": train, "validation": validation, "test": test}
    return {name: [{"id": f"sql-{name}-{i:03d}", **x} for i, x in enumerate(items)] for name, items in splits.items()}
