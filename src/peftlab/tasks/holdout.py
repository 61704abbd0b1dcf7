"""Validation held out of train when the data has none, as disjoint from train as the test is.

A random draw is not: SST-2's training rows are phrases cut from the same sentences (of 150 random
training rows, 135 appear word for word inside another), so a phrase drawn at random is scored
against a model that trained on the sentence around it, which rewards memorisation; and Spider's
test databases are unseen in training while a random draw shares them. So (task.hold_out_by):
- always: validation is drawn (seed 0) from training rows whose input lies inside no longer
  training input (whole sentences, not their phrases), and training rows whose input contains, or
  lies inside, a held-out input are dropped and counted;
- 'database': whole databases are held out (cross-database text-to-SQL), then the rule above.
"Inside" is word for word, ignoring case and spacing. Each input is checked only against the rows
that share its rarest word (an index from word to rows): SST-2's 67k rows take 2-3 s on 2 CPU
cores, where a scan of all pairs would take hours.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from peftlab.config import TaskConfig
from peftlab.errors import PeftlabError

SEED = 0
TOKEN = re.compile(r"\w+|[^\w\s]")  # words, and punctuation marks as words of their own


@dataclass
class HeldOut:
    train: list[dict]
    validation: list[dict]
    dropped: int  # training rows dropped: their input contains, or lies inside, a held-out input
    how: str  # how validation was drawn, for the log


class Texts:
    """Inputs as padded word strings (' the film is good '), so that `a in b` means a's words
    appear in b one after another, and an index from each word to the rows that have it."""

    def __init__(self, words: list[list[str]]):
        self.words = words
        self.padded = [" " + " ".join(w) + " " for w in words]
        rows: dict[str, list[int]] = defaultdict(list)
        for i, ws in enumerate(words):
            for w in set(ws):
                rows[w].append(i)
        self.rows = dict(rows)
        self.count = {w: len(r) for w, r in self.rows.items()}

    def containing(self, words: list[str], padded: str) -> Iterator[int]:
        """Rows whose input contains the input `padded` (whose words are `words`)."""
        # An empty input lies inside every input and says nothing; a word no row has rules all out.
        if not words or not self.count.keys() >= set(words):
            return iter(())
        rarest = min(words, key=self.count.__getitem__)
        return (j for j in self.rows[rarest] if padded in self.padded[j])


def hold_out(
    cfg: TaskConfig, rows: dict[str, list[dict]], source: Callable[[str], str], exclude: set[int] = frozenset()
) -> HeldOut:
    """Validation carved from rows['train'] (never from test); source(split) names a split's file.
    Rows in ``exclude`` (training rows that are test inputs) are never drawn as validation."""
    train = rows["train"]
    n = min(cfg.validation_size, max(len(train) // 10, 1))
    names = input_fields(cfg)
    texts = Texts([TOKEN.findall(input_text(names, r).lower()) for r in train])
    databases = _databases(cfg, rows, source)
    if databases is not None:
        held, how = _whole_databases(databases, n)
    else:
        held, how = _whole_inputs(texts, n, exclude), "inputs that lie inside no other training input"
    drop = _overlapping(texts, held)
    keep = [r for i, r in enumerate(train) if i not in held and i not in drop]
    return HeldOut(keep, [train[i] for i in sorted(held)], len(drop), how)


def input_fields(cfg: TaskConfig) -> list[str]:
    """The row fields the prompt shows, in template order."""
    return list(dict.fromkeys(re.split(r"[.\[]", f)[0] for f in _fields(cfg.input_template or "")))


def input_text(fields: list[str], row: dict) -> str:
    """What the model reads of a row: the values of the template's fields, not its fixed wording
    (every prompt shares that)."""
    return "\n".join([_flat(row[f]) for f in fields if row.get(f) is not None])


def _flat(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return " ".join(_flat(v) for v in value)
    if isinstance(value, dict):  # e.g. CommonsenseQA's choices {label: [...], text: [...]}
        return " ".join(_flat(v) for v in value.values())
    return str(value)


def _fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError:  # a malformed template is reported, with its rule, where prompts are built
        return []


def _whole_inputs(texts: Texts, n: int, exclude: set[int] = frozenset()) -> set[int]:
    """n seeded rows whose input lies inside no training input other than copies of itself (none of
    ``exclude``)."""
    order = list(range(len(texts.padded)))
    random.Random(SEED).shuffle(order)
    held: set[int] = set()
    for i in order:
        if len(held) == n:
            break
        if i in exclude:
            continue
        containers = texts.containing(texts.words[i], texts.padded[i])
        if not any(texts.padded[j] != texts.padded[i] for j in containers):
            held.add(i)
    return held


def _overlapping(texts: Texts, held: set[int]) -> set[int]:
    """Training rows (not held out) whose input contains, or lies inside, a held-out input."""
    drop: set[int] = set()
    for i in held:
        drop.update(texts.containing(texts.words[i], texts.padded[i]))
    ids = sorted(held)
    validation = Texts([texts.words[i] for i in ids])
    for j, words in enumerate(texts.words):
        if next(validation.containing(words, texts.padded[j]), None) is not None:
            drop.add(j)
    return drop - held


def _databases(cfg: TaskConfig, rows: dict[str, list[dict]], source: Callable[[str], str]) -> list[str] | None:
    """The database of each training row when whole databases are held out; None otherwise."""
    per_row = bool(_fields(cfg.database or ""))
    if cfg.hold_out_by == "text" or (cfg.hold_out_by == "auto" and not per_row):
        return None
    if not per_row:
        raise PeftlabError(
            "task.hold_out_by: 'database' needs task.database to name a row field, e.g. "
            f"'database/{{db_id}}/{{db_id}}.sqlite' (got {cfg.database!r}); use 'text' or 'auto'"
        )
    train = [_database_of(cfg, r, f"{source('train')} row {i + 1}") for i, r in enumerate(rows["train"])]
    if cfg.hold_out_by == "auto":
        test = {_database_of(cfg, r, f"{source('test')} row {i + 1}") for i, r in enumerate(rows.get("test") or [])}
        return train if test and not test & set(train) and len(set(train)) > 1 else None
    if len(set(train)) < 2:
        raise PeftlabError(
            f"{source('train')}: task.hold_out_by: 'database' needs at least two databases in train, found "
            f"{len(set(train))}; use 'text'"
        )
    return train


def _database_of(cfg: TaskConfig, row: dict, where: str) -> str:
    try:
        return cfg.database.format(**row)
    except KeyError as e:
        raise PeftlabError(f"{where}: task.database uses field {e} which the row lacks") from None
    except (ValueError, IndexError) as e:
        raise PeftlabError(f"task.database: invalid format string ({e}); use {{field}} for a row's field") from None


def _whole_databases(databases: list[str], n: int) -> tuple[set[int], str]:
    """Seeded whole databases until they hold at least n rows; at least one stays in train."""
    names = sorted(set(databases))
    random.Random(SEED).shuffle(names)
    size = Counter(databases)
    chosen: set[str] = set()
    count = 0
    for name in names[:-1]:
        if count >= n:
            break
        chosen.add(name)
        count += size[name]
    held = {i for i, d in enumerate(databases) if d in chosen}
    return held, f"whole databases: {len(chosen)} of {len(names)}"
