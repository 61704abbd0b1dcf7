"""Readers: how a dataset's raw rows become one row per example, split by split.

Most datasets need nothing ('rows': one row is one example). Some store examples in a shape of
their own: GeoQuery groups paraphrases of one query with placeholder variables, WikiSQL stores
its queries as structures over per-question tables, RACE keeps distractors among the options.
A reader turns those into flat rows that the task's template and fields then use.

A reader is ``fn(raw: {split: rows}, options: dict, where: str) -> {split: rows}``; the split
'all' holds a file that the reader splits itself (GeoQuery ships one file). What readers share
(the option check, the plain reader) is in common.py.
"""

from __future__ import annotations

from peftlab.tasks.readers.common import Reader, rows
from peftlab.tasks.readers.geoquery import geoquery
from peftlab.tasks.readers.race import race_distractors
from peftlab.tasks.readers.wikisql import wikisql

READERS: dict[str, Reader] = {
    "rows": rows,
    "geoquery": geoquery,
    "wikisql": wikisql,
    "race_distractors": race_distractors,
}


def get_reader(name: str) -> Reader:
    return READERS[name]
