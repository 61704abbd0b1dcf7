"""Safe, read-only execution of model-written SQL, and execution-based scoring.

Model output is untrusted text, so every query runs on a read-only connection
(``mode=ro`` URI + ``PRAGMA query_only``), behind an authorizer that only allows
reads, as a single statement, under a wall-clock deadline, a row cap and size limits.
Only the standard library's :mod:`sqlite3` is used.
"""

from __future__ import annotations

import re
import sqlite3
import threading
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

# Size limits on the connection (https://www.sqlite.org/limits.html). No deadline can stop one C
# function call (SQLite looks for an interrupt only between VM instructions), so the size of a
# value is what bounds the time of one call: randomblob(1e9) under the default 1 GB limit took 10 s
# and built 1 GB (printf's %c repeat needs more: _GuardedPrintf). The worst calls are quadratic:
# instr() or replace() of a half-size needle took 10 s at 1 MiB, 0.14 s at 128 KiB (measured).
# 128 KiB is far above any answer a text-to-SQL query returns; a longer stored value can still be
# counted and filtered, but not read whole (SQLite then says "string or blob too big").
MAX_VALUE_BYTES = 128 * 1024
# Model output and gold queries are a few KB at most; this bounds how many calls one query holds.
MAX_SQL_BYTES = 64 * 1024
# LIKE/GLOB cost (pattern length) x (string length) in one call: a 50 000-byte pattern (SQLite's
# default) on a 100 KB string took 5-11 s; real patterns such as '%texas%' are a few bytes.
MAX_LIKE_PATTERN_BYTES = 1000
# All returned values together: max_rows values of MAX_VALUE_BYTES each would be over 1 GB.
MAX_RESULT_BYTES = 32 * 1024 * 1024
_FETCH_CHUNK = 64  # rows converted to Python between size checks (at most 8 MiB past the cap)
_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE_BYTES,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: MAX_SQL_BYTES,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: MAX_LIKE_PATTERN_BYTES,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,  # the authorizer already denies ATTACH; this too
}
_LIMITS_TEXT = (
    f"values up to {MAX_VALUE_BYTES // 1024} KiB, SQL up to {MAX_SQL_BYTES // 1024} KiB, "
    f"LIKE/GLOB patterns up to {MAX_LIKE_PATTERN_BYTES} bytes, results up to {MAX_RESULT_BYTES >> 20} MiB"
)


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


# One printf conversion: flags, width, precision, length modifier, type (https://www.sqlite.org/printf.html).
_CONVERSION = re.compile(r"%[-+ #0!,]*(\*|\d*)(?:\.(\*|\d*))?l{0,2}(.)", re.DOTALL)


def _repeats_char_hugely(fmt, args: tuple) -> bool:
    """Whether ``fmt`` holds a %c whose precision (its repeat count) is over MAX_VALUE_BYTES, with
    '*' read from ``args`` as SQLite does: each '*' and each conversion but %% and %n takes one."""
    if not isinstance(fmt, str):
        return False
    i = 0
    for m in _CONVERSION.finditer(fmt):
        width, precision, kind = m.groups()
        if kind == "%":
            continue
        i += width == "*"
        if precision == "*":
            repeat = args[i] if i < len(args) else 0
            i += 1
        else:
            repeat = int(precision) if precision else 0
        if kind == "c" and _huge_number(repeat):
            return True
        i += kind != "n"
    return False


def _huge_number(value) -> bool:
    try:
        return abs(float(value)) > MAX_VALUE_BYTES  # SQLite reads a '*' argument as a number, text too
    except (TypeError, ValueError, OverflowError):
        return False


class _GuardedPrintf:
    """printf()/format() that refuse a huge %c repeat and otherwise return SQLite's own result.

    SQLite 3.40 (this Python's) repeats %c's precision one char at a time and keeps looping after
    the result passed the length limit: printf('%.*c', 1e9, 'x') spent 9 s in one call that no
    deadline can stop. Such a call is refused (SQLite would give NULL, the value being over the
    length limit); every other call goes, as is, to SQLite's printf on a private in-memory
    connection with the same limits, so its result is unchanged."""

    def __init__(self):
        self.refused = False
        self._real: sqlite3.Connection | None = None

    def __call__(self, *args):
        if args and _repeats_char_hugely(args[0], args[1:]):
            self.refused = True
            raise ValueError("%c repeated past the length limit")
        if self._real is None:
            self._real = sqlite3.connect(":memory:")
            for limit, value in _LIMITS.items():
                self._real.setlimit(limit, value)
        marks = ", ".join("?" * len(args))
        return self._real.execute(f"SELECT printf({marks})", args).fetchone()[0]

    def install(self, conn: sqlite3.Connection) -> None:
        for name in ("printf", "format"):  # format() is printf's other name since SQLite 3.38
            conn.create_function(name, -1, self, deterministic=True)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()


class _Deadline:
    """Stops the running statement at the deadline, two ways, both checked by SQLite only between
    VM instructions: a progress handler (every _PROGRESS_EVERY instructions) and an interrupt
    from a timer thread, which SQLite sees at the next loop step, so a query whose few
    instructions per row are each slow calls stops within one row, not ~1000 instructions."""

    def __init__(self, conn: sqlite3.Connection, timeout_s: float):
        self.conn, self.timeout_s = conn, timeout_s
        self.expired = False
        self._lock = threading.Lock()  # interrupt() must not race close(): sqlite3_interrupt docs
        self._done = False
        self._at = 0.0
        self._timer = threading.Timer(timeout_s, self._interrupt)
        self._timer.daemon = True

    def _progress(self) -> int:
        if time.monotonic() > self._at:
            self.expired = True
        return 1 if self.expired else 0  # non-zero aborts the running statement

    def _interrupt(self) -> None:
        with self._lock:
            if not self._done:
                self.expired = True
                self.conn.interrupt()  # the one Connection method safe from another thread

    def __enter__(self) -> _Deadline:
        self._at = time.monotonic() + self.timeout_s
        self.conn.set_progress_handler(self._progress, _PROGRESS_EVERY)
        self._timer.start()
        return self

    def __exit__(self, *_) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()
        self._timer.join()  # no timer thread outlives the query, whatever happened


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    """Read-only connection with the size limits set; ``timeout_s`` also bounds waiting on a lock."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error as e:
        raise SQLError(f"cannot open database {path}: {e}") from e
    for limit, value in _LIMITS.items():
        conn.setlimit(limit, value)  # Python >= 3.11, which pyproject requires
    return conn


def _value_bytes(value) -> int:
    return len(value) if isinstance(value, (str, bytes)) else 8


def _fetch(cur: sqlite3.Cursor, max_rows: int) -> list:
    """Up to ``max_rows + 1`` rows, stopping once the values together pass MAX_RESULT_BYTES."""
    rows: list = []
    size = 0
    while len(rows) <= max_rows:
        chunk = cur.fetchmany(min(_FETCH_CHUNK, max_rows + 1 - len(rows)))
        if not chunk:
            break
        rows.extend(chunk)
        size += sum(_value_bytes(v) for row in chunk for v in row)
        if size > MAX_RESULT_BYTES:
            raise SQLError(f"query over a size limit ({_LIMITS_TEXT}): the result is over {size >> 20} MiB")
    return rows


def _over_limit(e: Exception) -> bool:
    """Whether SQLite (or Python's sqlite3) refused ``e``'s query for one of the _LIMITS."""
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_TOOBIG:
        return True
    return "pattern too complex" in str(e) or "query string is too large" in str(e)


def run_readonly(db_path: str | Path, sql: str, timeout_s: float = 2.0, max_rows: int = 10000) -> list[tuple]:
    """Run one read-only statement and return its rows.

    Raises SQLError with a clear message on any failure: missing database, syntax
    error, write/schema attempt, more than one statement, timeout (SQLTimeout), a value,
    the SQL or the result over a size limit, or more than ``max_rows`` rows.
    """
    path = Path(db_path)
    if not path.is_file():
        raise SQLError(f"database not found: {path}")
    _check_single_statement(sql)
    conn = _connect(path, timeout_s)
    denied: list[int] = []

    def authorize(action, *_):
        if action in _ALLOWED:
            return sqlite3.SQLITE_OK
        denied.append(action)
        return sqlite3.SQLITE_DENY

    deadline, printf = _Deadline(conn, timeout_s), _GuardedPrintf()
    try:
        conn.execute("PRAGMA query_only=ON")
        printf.install(conn)
        conn.set_authorizer(authorize)
        with deadline:
            rows = _fetch(conn.execute(sql), max_rows)
    except SQLError:
        raise
    except Exception as e:  # noqa: BLE001 - model output can trigger any sqlite/Python error
        if deadline.expired:
            raise SQLTimeout(f"query timed out after {timeout_s:g}s") from e
        if denied:
            raise SQLError(f"only read-only SELECT queries are allowed ({e})") from e
        if printf.refused or _over_limit(e):
            raise SQLError(f"query over a size limit ({_LIMITS_TEXT}): {e}") from e
        raise SQLError(f"query failed: {e}") from e
    finally:
        conn.close()
        printf.close()
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
