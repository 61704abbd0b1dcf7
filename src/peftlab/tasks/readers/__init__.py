"""Readers: how a dataset's raw rows become one row per example, split by split.

Most datasets need nothing ('rows': one row is one example). Some store examples in a shape of
their own: GeoQuery groups paraphrases of one query with placeholder variables, WikiSQL stores
its queries as structures over per-question tables, RACE keeps distractors among the options.
A reader turns those into flat rows that the task's template and fields then use.

A reader is ``fn(raw: {split: rows}, options: dict, where: str) -> {split: rows}``; the split
'all' holds a file that the reader splits itself (GeoQuery ships one file).
"""

from __future__ import annotations

from collections.abc import Callable

from peftlab.errors import PeftlabError

Reader = Callable[[dict[str, list[dict]], dict, str], dict[str, list[dict]]]


def rows(raw: dict[str, list[dict]], options: dict, where: str) -> dict[str, list[dict]]:
    if options:
        raise PeftlabError(f"{where}: task.reader_options {sorted(options)}: the 'rows' reader takes no options")
    if "all" in raw:
        raise PeftlabError(f"{where}: split 'all' needs a reader that splits it (e.g. reader: geoquery)")
    return raw


def get_reader(name: str) -> Reader:
    # local: each reader module imports check_options from this package (cycle)
    from peftlab.tasks.readers.geoquery import geoquery
    from peftlab.tasks.readers.race import race_distractors
    from peftlab.tasks.readers.wikisql import wikisql

    return {"rows": rows, "geoquery": geoquery, "wikisql": wikisql, "race_distractors": race_distractors}[name]


def check_options(options: dict, allowed: dict[str, tuple], where: str, reader: str) -> dict:
    """Options of a reader, validated: {name: (allowed values..)}; errors say what is allowed."""
    for key, value in options.items():
        if key not in allowed:
            raise PeftlabError(
                f"{where}: task.reader_options.{key}: unknown option of reader '{reader}'; "
                f"allowed: {', '.join(allowed)}"
            )
        if value not in allowed[key]:
            raise PeftlabError(
                f"{where}: task.reader_options.{key}={value!r}: allowed: {', '.join(map(str, allowed[key]))}"
            )
    return options
