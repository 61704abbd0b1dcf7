"""WikiSQL (Zhong et al. 2017, "Seq2SQL"): one question over one Wikipedia table per example.

WikiSQL stores each query as a structure (selected column, aggregation, conditions) over the
example's own table, not as SQL text, and ships no SQLite file that `datasets` can load. This
reader writes every table into one SQLite database (cached, built once, atomically) and turns each
structure into SQL over it, so WikiSQL is scored like every other text-to-SQL task: by executing
the predicted SQL. Text columns are declared COLLATE NOCASE because WikiSQL's condition values
were lower-cased by its annotators while the table cells were not (its official evaluator
lower-cases both). The prompt shows the example's own CREATE TABLE statement as {schema}.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from peftlab.errors import PeftlabError
from peftlab.rundir.runio import atomic_sqlite
from peftlab.tasks.readers.common import check_options

AGGREGATIONS = ("", "MAX", "MIN", "COUNT", "SUM", "AVG")
OPERATORS = ("=", ">", "<")


def _table_name(table_id: str) -> str:
    return "t_" + re.sub(r"\W", "_", str(table_id))


def _columns(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for h in header:
        name = str(h).strip() or "col"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return out


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: object, numeric: bool) -> str:
    if numeric:
        try:
            return repr(float(str(value).replace(",", "")))
        except ValueError:
            pass
    return "'" + str(value).replace("'", "''") + "'"


def create_statement(table: dict) -> str:
    cols = _columns(table["header"])
    defs = [
        f"{_quote_ident(c)} {'REAL' if t == 'real' else 'TEXT COLLATE NOCASE'}" for c, t in zip(cols, table["types"])
    ]
    return f"CREATE TABLE {_table_name(table['id'])} ({', '.join(defs)})"


def to_sql(table: dict, sql: dict) -> str:
    cols = _columns(table["header"])
    numeric = [t == "real" for t in table["types"]]
    sel = _quote_ident(cols[sql["sel"]])
    agg = AGGREGATIONS[sql["agg"]]
    query = f"SELECT {agg}({sel})" if agg else f"SELECT {sel}"
    query += f" FROM {_table_name(table['id'])}"
    conds = sql["conds"]
    parts = [
        f"{_quote_ident(cols[c])} {OPERATORS[o]} {_literal(v, numeric[c])}"
        for c, o, v in zip(conds["column_index"], conds["operator_index"], conds["condition"])
    ]
    return query + (" WHERE " + " AND ".join(parts) if parts else "")


def build_database(tables: dict[str, dict], root: Path) -> Path:
    """One SQLite file holding every table; named by a hash of the tables, so it is built once."""
    digest = hashlib.sha256(json.dumps(sorted(tables), ensure_ascii=False).encode()).hexdigest()[:16]
    path = root / f"wikisql-{digest}.sqlite"
    if path.is_file():
        return path

    def fill(conn) -> None:
        for table in tables.values():
            conn.execute(create_statement(table))
            numeric = [t == "real" for t in table["types"]]
            marks = ", ".join("?" * len(table["header"]))
            conn.executemany(
                f"INSERT INTO {_table_name(table['id'])} VALUES ({marks})",
                [[_cell(v, n) for v, n in zip(row, numeric)] for row in table["rows"]],
            )

    return atomic_sqlite(path, fill)


def _cell(value: object, numeric: bool) -> object:
    if numeric:
        try:
            return float(str(value).replace(",", ""))
        except ValueError:
            return value
    return value


def wikisql(raw: dict[str, list[dict]], options: dict, where: str) -> dict[str, list[dict]]:
    from peftlab.models.bundled import cache_root  # local: peftlab.models pulls in torch; readers stay light

    check_options(options, {}, where, "wikisql")
    tables: dict[str, dict] = {}
    out: dict[str, list[dict]] = {}
    for split, rows in raw.items():
        out[split] = []
        for n, row in enumerate(rows):
            try:
                table = row["table"]
                tables.setdefault(str(table["id"]), table)
                out[split].append(
                    {
                        "id": f"{split}-{n}",
                        "question": row["question"],
                        "sql": to_sql(table, row["sql"]),
                        "schema": create_statement(table),
                    }
                )
            except (KeyError, TypeError, IndexError) as e:
                raise PeftlabError(
                    f"{where} {split} row {n + 1}: not a WikiSQL row (needs question, "
                    f"table{{id, header, types, rows}}, sql{{sel, agg, conds}}); problem: {e!r}"
                ) from None
    db = build_database(tables, cache_root() / "tasks")
    for rows in out.values():
        for row in rows:
            row["database"] = str(db)
    return out
