"""Safe, read-only execution of model-written SQL, and execution-based scoring.

Model output is untrusted text, so every query runs on a read-only connection
(``mode=ro`` URI + ``PRAGMA query_only``), behind an authorizer that only allows
reads, as a single statement, under a wall-clock deadline and a row cap.
Only the standard library's :mod:`sqlite3` is used.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

__all__ = ["SQLError", "SQLTimeout", "run_readonly", "results_match", "execution_match", "extract_sql"]


class SQLError(Exception):
    """A query could not be run safely: syntax error, write attempt, timeout, too many rows."""


class SQLTimeout(SQLError):
    """A query ran past its time limit: a fact about the machine's speed, not about the query."""


# A gold query is the task's, not the model's: it gets this long before it counts as broken, so that
# a slow moment of the machine never drops an example from one run's scoring and not another's.
GOLD_TIMEOUT_S = 60.0


# Authorizer allow-list: reading tables/columns, calling functions, recursive CTEs.
# Everything else (INSERT, ATTACH, PRAGMA, CREATE TEMP ...) is denied even before
# query_only would catch it, so e.g. ATTACH cannot create a new file on disk.
_ALLOWED = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
_PROGRESS_EVERY = 1000  # VM instructions between deadline checks: cheap, and ms-precise


def _skip_quoted(sql: str, i: int) -> int:
    """Index just past the quoted token starting at sql[i] ('..', "..", `..`, [..])."""
    close = "]" if sql[i] == "[" else sql[i]
    j = i + 1
    while True:
        j = sql.find(close, j)
        if j < 0:
            return len(sql)  # unterminated: let SQLite report the syntax error
        if close != "]" and sql.startswith(close * 2, j):  # '' is an escaped quote
            j += 2
            continue
        return j + 1


def _top_level_semicolons(sql: str) -> Iterable[int]:
    """Yield positions of ';' outside quotes and comments."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "'\"`[":
            i = _skip_quoted(sql, i)
        else:
            if c == ";":
                yield i
            i += 1


def _mask(sql: str) -> str:
    """Blank out comments and quoted strings/identifiers, keeping the SQL structure."""
    out, i, n = [], 0, len(sql)
    while i < n:
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
            out.append(" ")
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif sql[i] in "'\"`[":
            i = _skip_quoted(sql, i)
            out.append("''")
        else:
            out.append(sql[i])
            i += 1
    return "".join(out)


def _check_single_statement(sql: str) -> None:
    """Reject empty input and anything with a second statement after a top-level ';'."""
    bare = _mask(sql)
    if not bare.replace(";", "").strip():
        raise SQLError("empty query")
    first = bare.find(";")
    if first >= 0 and bare[first:].replace(";", "").strip():
        raise SQLError("only one SQL statement is allowed")


def run_readonly(db_path: str | Path, sql: str, timeout_s: float = 2.0, max_rows: int = 10000) -> list[tuple]:
    """Run one read-only statement and return its rows.

    Raises SQLError with a clear message on any failure: missing database, syntax
    error, write/schema attempt, more than one statement, timeout, or more than
    ``max_rows`` rows.
    """
    path = Path(db_path)
    if not path.is_file():
        raise SQLError(f"database not found: {path}")
    _check_single_statement(sql)
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error as e:
        raise SQLError(f"cannot open database {path}: {e}") from e
    denied: list[int] = []
    timed_out = False

    def authorize(action, *_):
        if action in _ALLOWED:
            return sqlite3.SQLITE_OK
        denied.append(action)
        return sqlite3.SQLITE_DENY

    try:
        conn.execute("PRAGMA query_only=ON")
        conn.set_authorizer(authorize)
        deadline = time.monotonic() + timeout_s

        def progress() -> int:
            nonlocal timed_out
            timed_out = time.monotonic() > deadline
            return 1 if timed_out else 0  # non-zero aborts the running statement

        conn.set_progress_handler(progress, _PROGRESS_EVERY)
        cur = conn.execute(sql)
        rows = cur.fetchmany(max_rows + 1)
    except Exception as e:  # noqa: BLE001 - model output can trigger any sqlite/Python error
        if timed_out:
            raise SQLTimeout(f"query timed out after {timeout_s:g}s") from e
        if denied:
            raise SQLError(f"only read-only SELECT queries are allowed ({e})") from e
        raise SQLError(f"query failed: {e}") from e
    finally:
        conn.close()
    if len(rows) > max_rows:
        raise SQLError(f"query returned more than {max_rows} rows")
    return [tuple(r) for r in rows]


def _normalize(rows: Iterable[Sequence]) -> list[tuple]:
    # Rounding makes AVG() and equivalent arithmetic (e.g. SUM()/COUNT()*1.0) compare equal;
    # ints and integral floats already compare (and hash) equal in Python.
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]


def results_match(pred_rows: Iterable[Sequence], gold_rows: Iterable[Sequence], ordered: bool) -> bool:
    """Compare result sets: as lists if ``ordered``, else as multisets (duplicates count)."""
    pred, gold = _normalize(pred_rows), _normalize(gold_rows)
    if ordered:
        return pred == gold
    return Counter(pred) == Counter(gold)


_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def _top_level(sql: str) -> str:
    """``sql`` (masked) with everything inside parentheses blanked: subqueries, CTE bodies, window
    specifications and function arguments."""
    out, depth = [], 0
    for ch in sql:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        out.append(ch if depth == 0 and ch != ")" else " ")
    return "".join(out)


def _has_order_by(sql: str) -> bool:
    """Whether the query's own result is ordered: an ORDER BY at its top level. One inside a
    subquery, a CTE or a window (``OVER (ORDER BY ...)``) or in a string orders nothing we compare."""
    return bool(_ORDER_BY.search(_top_level(_mask(sql))))


def execution_match(
    db_path: str | Path, pred_sql: str, gold_sql: str, timeout_s: float = 2.0, max_rows: int = 10000
) -> bool:
    """True iff ``pred_sql`` runs and returns the same rows as ``gold_sql``.

    Row order matters only when the gold query has a top-level ORDER BY. A failing prediction
    scores False; a failing gold query raises SQLError because it is a task bug.
    """
    try:
        gold = run_readonly(db_path, gold_sql, max(timeout_s, GOLD_TIMEOUT_S), max_rows)
    except SQLError as e:
        raise SQLError(f"gold query failed: {e}") from e
    try:
        pred = run_readonly(db_path, pred_sql, timeout_s, max_rows)
    except SQLError:
        return False
    return results_match(pred, gold, ordered=_has_order_by(gold_sql))


_FENCE = "```"
# SELECT anywhere; WITH only when it really starts a CTE, so prose like
# "Here is the query with the answer: SELECT ..." starts at SELECT, not at "with".
_SQL_START = re.compile(r"\bSELECT\b|\bWITH\s+(?:RECURSIVE\s+)?\w+\s*(?:\([^)]*\)\s*)?AS\s*\(", re.IGNORECASE)


def _cut_at_semicolon(sql: str) -> str:
    for i in _top_level_semicolons(sql):
        return sql[:i]
    return sql


def extract_sql(text: str) -> str:
    """Pull the SQL out of a model's free-form answer ('' if there is none).

    Zero-shot models wrap SQL in prose or Markdown; scoring should not punish that.
    Take the first ``` fenced block if any (language tag dropped; unclosed fences run
    to the end), else the text from the first SELECT/WITH on, stopping at a blank
    line (where explanations usually start); then cut at the first ';' outside quotes.
    """
    text = text or ""
    start = text.find(_FENCE)
    if start >= 0:
        body = text[start + len(_FENCE) :]
        end = body.find(_FENCE)
        body = body if end < 0 else body[:end]
        m = _SQL_START.search(body)
        if m:
            body = body[m.start() :]
        else:  # drop a language tag line such as "sql" or "sqlite"
            body = re.sub(r"^[ \t]*[A-Za-z0-9_+-]*[ \t]*\n", "", body, count=1)
    else:
        m = _SQL_START.search(text)
        body = text[m.start() :] if m else text
        body = re.split(r"\n[ \t]*\n", body, maxsplit=1)[0]
    return _cut_at_semicolon(body).strip()
