"""Hostile SQL meets limits: one long function call, a huge value or a huge result stops within
twice the time limit with a SQLError, memory stays small, and the database file is unchanged."""

import hashlib
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from peftlab.tasks.sql_exec import SQLError, SQLTimeout, execution_match, run_readonly

LIMIT_S = 0.5  # small, to keep the suite fast; every hostile query must end within 2 * LIMIT_S
BIG_CELL = 100_000  # characters: a long real value (a document), which must still be readable

# Each of these ran for seconds (up to minutes) or built a value of up to 1 GB before the limits.
HOSTILE = {
    "randomblob": "SELECT randomblob(1000000000)",
    "printf": "SELECT printf('%.*c', 1e9, 'x')",
    "zeroblob": "SELECT zeroblob(2e9)",
    "replace_hex": "SELECT length(replace(hex(zeroblob(400000000)), '0', 'ab'))",
    "hex_randomblob": "SELECT length(hex(randomblob(300000000)))",
    "recursive_cte": "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1e12) "
    "SELECT count(*) FROM c",
    "cross_join": "SELECT count(*) FROM t a, t b, t c",
    "sort": "SELECT a.n FROM t a, t b, t c ORDER BY random()",
    "group_concat": "SELECT length(group_concat(hex(zeroblob(100000)))) FROM t a, t b",
    # A long LIKE pattern costs (pattern length) x (string length) inside one call.
    "like_pattern": "SELECT printf('%.*c', 100000, 'a') LIKE '%' || printf('%.*c', 49990, 'a') || 'b'",
    # Few VM steps per row, each a ~0.1 s call: the progress handler (every 1000 steps) waits for
    # dozens of rows; an interrupt is seen at the next row.
    "slow_rows": "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000) "
    "SELECT sum(instr(printf('%.*c', 120000, 'a'), printf('%.*c', 60000 + n, 'a') || 'b')) FROM c",
    # Many values that each pass the per-value limit still make a result too big to hold.
    "wide_result": "SELECT zeroblob(100000) FROM t a, t b LIMIT 5000",
}


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (n INTEGER, s TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"row{i}") for i in range(1000)])
    conn.execute("CREATE TABLE doc (id INTEGER, body TEXT)")
    conn.execute("INSERT INTO doc VALUES (1, ?)", ("d" * BIG_CELL,))
    conn.commit()
    conn.close()
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_query_stops_within_twice_the_limit(db, name):
    start = time.monotonic()
    with pytest.raises(SQLError, match="timed out|limit") as caught:
        run_readonly(db, HOSTILE[name], timeout_s=LIMIT_S)
    elapsed = time.monotonic() - start
    assert elapsed < 2 * LIMIT_S, f"{name}: {elapsed:.2f}s ({caught.value})"


def test_prediction_over_a_limit_scores_false(db):
    for name in ("randomblob", "slow_rows"):
        start = time.monotonic()
        assert execution_match(db, HOSTILE[name], "SELECT 1", timeout_s=LIMIT_S) is False
        assert time.monotonic() - start < 2 * LIMIT_S


def test_time_limit_is_a_timeout(db):
    """A slow query is SQLTimeout (gold queries that hit it are kept); a too-big value is not."""
    with pytest.raises(SQLTimeout):
        run_readonly(db, HOSTILE["slow_rows"], timeout_s=LIMIT_S)
    with pytest.raises(SQLError) as caught:
        run_readonly(db, HOSTILE["randomblob"], timeout_s=LIMIT_S)
    assert not isinstance(caught.value, SQLTimeout)


def test_database_unchanged_and_no_thread_left(db):
    before, files = _digest(db), sorted(db.parent.iterdir())
    threads = set(threading.enumerate())
    for sql in HOSTILE.values():
        with pytest.raises(SQLError):
            run_readonly(db, sql, timeout_s=LIMIT_S)
    time.sleep(2 * LIMIT_S)  # a timer left running would still be alive now
    assert set(threading.enumerate()) == threads
    assert _digest(db) == before
    assert sorted(db.parent.iterdir()) == files


_MEMORY_PROBE = """
import resource, sys
from peftlab.tasks.sql_exec import SQLError, run_readonly
db, limit, queries = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for sql in queries:
    try:
        run_readonly(db, sql, timeout_s=limit)
    except SQLError:
        pass
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) // 1024)
"""


def test_memory_stays_bounded(db):
    """Peak memory of a fresh process (ru_maxrss only grows, so other tests cannot hide a spike)."""
    queries = [HOSTILE[k] for k in ("randomblob", "printf", "replace_hex", "hex_randomblob", "wide_result")]
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(db), str(LIMIT_S), *queries],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    grew_mb = int(out.stdout.strip())
    assert grew_mb < 200, f"peak memory grew by {grew_mb} MB"


def test_normal_queries_unchanged(db):
    assert run_readonly(db, "SELECT n, s FROM t WHERE n < 3 ORDER BY n") == [(0, "row0"), (1, "row1"), (2, "row2")]
    assert run_readonly(db, "SELECT count(*), sum(n) FROM t") == [(1000, 499500)]
    assert run_readonly(db, "SELECT length(body), substr(body, 1, 3) FROM doc") == [(BIG_CELL, "ddd")]
    assert run_readonly(db, "SELECT body FROM doc") == [("d" * BIG_CELL,)]
    assert run_readonly(db, "SELECT s FROM t WHERE s LIKE '%99%' ORDER BY n")[:2] == [("row99",), ("row199",)]
    assert len(run_readonly(db, "SELECT a.n FROM t a, t b WHERE b.n < 5", timeout_s=LIMIT_S)) == 5000
    assert execution_match(db, "SELECT s FROM t WHERE n BETWEEN 10 AND 12", "SELECT s FROM t WHERE n IN (10, 11, 12)")
    assert not execution_match(db, "SELECT s FROM t WHERE n < 3", "SELECT s FROM t WHERE n < 4")
