"""Building a task: examples per split from a config, how they are prompted, and which metrics score
them (the Task and Example records themselves: task.py).

Every method of a comparison gets its examples from here, so all of them see the same prompt.
"""

from __future__ import annotations

import random
import sqlite3
import string
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from peftlab.config import TaskConfig
from peftlab.data.readers import read_hub, read_rows, read_saved_splits, saved_dataset
from peftlab.errors import PeftlabError
from peftlab.tasks import chat, metrics
from peftlab.tasks.calibration import content_free_prompts
from peftlab.tasks.catalog import catalog
from peftlab.tasks.holdout import hold_out, input_fields, input_text
from peftlab.tasks.overlap import dedupe, normalise
from peftlab.tasks.readers import get_reader
from peftlab.tasks.sql_exec import GOLD_TIMEOUT_S, SQLError, SQLTimeout, run_readonly
from peftlab.tasks.task import Example, Task

SPLITS = ("train", "validation", "test")


def _needs_database(cfg: TaskConfig) -> bool:
    return any(metrics.REGISTRY[m].needs_database for m in (cfg.metric, *cfg.extra_metrics))


def build_task(cfg: TaskConfig, log=None) -> Task:
    """Examples of every split, with the same prompt for every method, and how they are scored."""
    # local: tasks.builtin pulls in torch through peftlab.models, which reading a task's files does not need
    from peftlab.tasks.builtin import BUILTIN

    log = log or (lambda *_: None)
    raw, sources, base = _raw_splits(cfg)
    if raw is None:
        if cfg.name in BUILTIN:
            task = BUILTIN[cfg.name](cfg)
            task.overlap = _decontaminate(cfg, task.splits, log)
            return task
        raise PeftlabError(
            f"task '{cfg.name}': no data. Packaged tasks: {', '.join(catalog())}; built in: {', '.join(BUILTIN)}. "
            "Otherwise give task.data_dir, task.data_files (local JSONL/CSV/Parquet) or task.hub (a hub dataset id)"
        )
    if chat.is_chat(cfg):
        chat.check_config(cfg)
    for field in () if chat.is_chat(cfg) else ("input_template", "target_field"):
        if getattr(cfg, field) is None:
            raise PeftlabError(f"task.{field} is required for a task read from files or the hub")
    if _needs_database(cfg) and cfg.database is None:
        names = [m for m in (cfg.metric, *cfg.extra_metrics) if metrics.REGISTRY[m].needs_database]
        raise PeftlabError(f"task '{cfg.name}': {', '.join(names)} needs task.database (the SQLite file)")
    where = ", ".join(dict.fromkeys(sources.values()))
    rows = get_reader(cfg.reader)(raw, dict(cfg.reader_options), where)

    def source(split: str) -> str:  # errors name the file (or hub split) a row came from
        return sources[split] if split in sources else f"{sources.get('all', where)} ({split})"

    if chat.is_chat(cfg):  # malformed records: an error, or dropped and counted, before validation is drawn
        rows = {split: chat.good_rows(cfg, r, source(split), log) for split, r in rows.items()}
    if not rows.get("validation") and rows.get("train"):
        # A chat record's input is its conversation: holdout.py finds it through a template naming its fields.
        held_cfg = cfg.model_copy(update={"input_template": chat.input_template(cfg)}) if chat.is_chat(cfg) else cfg
        _hold_out_validation(held_cfg, rows, source, log)
    splits = {split: _examples(cfg, r, source(split), base) for split, r in rows.items() if split in SPLITS}
    if _needs_database(cfg):
        for split in ("validation", "test"):
            if split in splits:
                splits[split] = _runnable(splits[split], f"task {cfg.name} {split}", log)
    overlap = _decontaminate(cfg, splits, log)  # before demonstrations: they are drawn from train
    demos = _add_demonstrations(cfg, splits) if cfg.shots else ""
    names = [cfg.metric, *[m for m in cfg.extra_metrics if m != cfg.metric]]
    fields = {f for _, f, _, _ in string.Formatter().parse(cfg.input_template or "") if f}
    only = next(iter(fields)) if len(fields) == 1 else None  # the template's one field, if it has exactly one
    format_input = (lambda text: cfg.input_template.format(**{only: text})) if only else None
    return Task(
        cfg.name,
        splits,
        names,
        metrics.REGISTRY[cfg.metric].primary,
        cfg.max_new_tokens,
        higher_is_better=cfg.higher_is_better,
        format_input=format_input,
        output_type=cfg.output_type,
        label_words=_label_words(cfg, splits),
        content_free=_content_free(cfg, demos),
        overlap=overlap,
    )


def _content_free(cfg: TaskConfig, demonstrations: str) -> list[str] | None:
    if not cfg.calibrate:
        return None
    if cfg.output_type not in ("classify", "multiple_choice"):
        raise PeftlabError(
            f"task.calibrate: contextual calibration rescales answer scores, so it needs output_type classify "
            f"or multiple_choice; task '{cfg.name}' has output_type {cfg.output_type}"
        )
    return content_free_prompts(cfg.input_template, demonstrations)


def _raw_splits(cfg: TaskConfig) -> tuple[dict[str, list[dict]] | None, dict[str, str], Path]:
    """(raw rows per split, where each split came from, folder that relative database paths start at).

    Precedence: data_files (explicit paths), then data_dir + local_files, then the hub."""
    allowed = (*SPLITS, "all")
    base = Path(cfg.data_dir or ".")
    if cfg.data_files is not None:
        files = {s: Path(p) for s, p in cfg.data_files.items()}
        what = "task.data_files"
    elif cfg.data_dir is not None and saved_dataset(base) == "dict":
        return (*_saved_splits(cfg, base), base)
    elif cfg.data_dir is not None:
        if not cfg.local_files:
            raise PeftlabError("task.data_dir is set but task.local_files (file name per split) is not")
        if not base.is_dir():
            what_is = "a file, not a folder" if base.exists() else "folder not found"
            raise PeftlabError(f"task.data_dir: {what_is}: {cfg.data_dir}")
        files = {s: base / name for s, name in cfg.local_files.items()}
        what = "task.local_files"
    elif cfg.hub is not None:
        files = {s: Path(h) for s, h in (cfg.hub_splits or {s: s for s in SPLITS}).items()}
        what = "task.hub_splits"
    else:
        return None, {}, base
    for split in files:
        if split not in allowed:
            raise PeftlabError(f"{what}: unknown split '{split}'; allowed: {', '.join(allowed)}")
    if cfg.data_files is None and cfg.data_dir is None:
        raw = {s: read_hub(cfg.hub, str(h), cfg.hub_config) for s, h in files.items()}
        sources = {s: f"{cfg.hub}:{h}" for s, h in files.items()}
    else:
        raw, sources = {s: read_rows(p) for s, p in files.items()}, {s: str(p) for s, p in files.items()}
    _refuse_empty(raw, sources, what)
    return raw, sources, base


def _saved_splits(cfg: TaskConfig, base: Path) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """The splits of a DatasetDict saved with ``save_to_disk`` (task.data_dir): each of train, validation
    and test by its own name, or by the saved split task.local_files names for it ({validation: dev})."""
    saved = read_saved_splits(base)
    wanted = dict(cfg.local_files) if cfg.local_files else {s: s for s in SPLITS if s in saved}
    for split, name in wanted.items():
        if split not in (*SPLITS, "all"):
            raise PeftlabError(f"task.local_files: unknown split '{split}'; allowed: {', '.join((*SPLITS, 'all'))}")
        if name not in saved:
            raise PeftlabError(
                f"task.data_dir: {base} (saved with save_to_disk) has no split '{name}'; it has "
                f"{', '.join(sorted(saved))}; name the one to use per split in task.local_files"
            )
    if not wanted:
        raise PeftlabError(
            f"task.data_dir: {base} (saved with save_to_disk) has splits {', '.join(sorted(saved))}, none named "
            f"{', '.join(SPLITS)}; map them in task.local_files, e.g. {{train: {sorted(saved)[0]}}}"
        )
    rows = {split: saved[name] for split, name in wanted.items()}
    sources = {s: f"{base} (split {n})" for s, n in wanted.items()}
    _refuse_empty(rows, sources, "task.data_dir")
    return rows, sources


def _refuse_empty(raw: dict[str, list[dict]], sources: dict[str, str], what: str) -> None:
    """A split's file with no rows is a mistake (a truncated download, the wrong file): training on nothing,
    or scoring nothing, would otherwise go on and report numbers about no examples."""
    for split, rows in raw.items():
        if not rows:
            fix = "give a file with at least one row"
            if split == "validation":
                fix += f", or remove validation from {what} (validation is then held out of train)"
            raise PeftlabError(f"{sources[split]}: the {split} data ({what}) has no rows; {fix}")


def _hold_out_validation(cfg: TaskConfig, rows: dict[str, list[dict]], source, log) -> None:
    """Validation carved from train (never from test), as disjoint from train as the test is
    (peftlab.tasks.holdout); the log says how many training rows that cost. A training row that is a test
    input is never drawn (task.dedupe: train drops it from train; with 'off' the draw is as before)."""
    fields = input_fields(cfg)
    tested = {normalise(input_text(fields, r)) for r in rows.get("test") or []} if cfg.dedupe == "train" else set()
    exclude = {i for i, r in enumerate(rows["train"]) if normalise(input_text(fields, r)) in tested}
    held = hold_out(cfg, rows, source, exclude)
    rows["train"], rows["validation"] = held.train, held.validation
    log(
        f"task {cfg.name}: no validation split; {len(held.validation)} training examples held out as "
        f"validation (seed 0, {held.how}); {held.dropped} training rows dropped whose input contains, or "
        "lies inside, a held-out input"
    )


def _decontaminate(cfg: TaskConfig, splits: dict[str, list[Example]], log) -> dict:
    """Count inputs shared between splits and, with task.dedupe: train, drop them from train
    (peftlab.tasks.overlap); the log says what was found and done."""
    found = dedupe(splits, cfg.dedupe, cfg.name)
    log(found.describe(cfg.name))
    return found.to_json()


def _runnable(examples: list[Example], where: str, log) -> list[Example]:
    """Scored examples keep only gold queries that run (5 of GeoQuery's 877 do not on its own
    database); an example with none is dropped and counted, since no prediction could match it."""
    kept = []
    for e in examples:
        good = []
        for ref in e.references:
            try:
                run_readonly(e.database, ref, timeout_s=GOLD_TIMEOUT_S)
                good.append(ref)
            except SQLTimeout:  # slow, not broken: dropping it would depend on the machine's speed
                good.append(ref)
            except SQLError:
                pass
        if good:
            e.references = good
            kept.append(e)
    if len(kept) < len(examples):
        log(
            f"{where}: {len(examples) - len(kept)} of {len(examples)} examples dropped: their gold SQL fails "
            "on the database"
        )
    return kept


def _add_demonstrations(cfg: TaskConfig, splits: dict[str, list[Example]]) -> str:
    """k-shot: the same k training examples, drawn with shots_seed, before every prompt; returns them.

    They are removed from train so no method trains on the examples it is shown as context."""
    train = splits.get("train") or []
    if len(train) < cfg.shots:
        raise PeftlabError(f"task.shots={cfg.shots}: the train split has only {len(train)} examples to draw from")
    picks = sorted(random.Random(cfg.shots_seed).sample(range(len(train)), cfg.shots))
    demos = "".join(f"{train[i].prompt}\n{train[i].target}\n\n" for i in picks)
    splits["train"] = [e for i, e in enumerate(train) if i not in set(picks)]
    for examples in splits.values():
        for e in examples:
            e.prompt = demos + e.prompt
    return demos


def _label_words(cfg: TaskConfig, splits: dict[str, list[Example]]) -> list[str] | None:
    if cfg.output_type != "classify":
        return None
    if cfg.label_words is None:
        raise PeftlabError("task.label_words is required with output_type: classify (the words the model may answer)")
    words = list(cfg.label_words.values()) if isinstance(cfg.label_words, dict) else list(cfg.label_words)
    # A mapping's keys are what the data holds (SST-2's 0/1): an unmapped label is one of no key.
    keyed = isinstance(cfg.label_words, dict)
    allowed = f"a key of task.label_words {list(cfg.label_words)}" if keyed else f"one of task.label_words {words}"
    for split, examples in splits.items():
        for e in examples:
            if e.target not in words:
                raise PeftlabError(f"task '{cfg.name}' {split} example {e.id}: label {e.target!r} is not {allowed}")
    return words


def _choices(cfg: TaskConfig, row: dict, where: str) -> tuple[list[str], str]:
    """(options, gold option text) of a multiple-choice row. The answer may be the option's
    label (CommonsenseQA's {label, text}), its letter (RACE's 'B'), its index or its text."""
    raw = row.get(cfg.choices_field)
    labels = None
    if isinstance(raw, dict) and "text" in raw:
        labels, raw = raw.get("label"), raw["text"]
    if not isinstance(raw, list) or not raw:
        raise PeftlabError(
            f"{where}: field '{cfg.choices_field}' must be a non-empty list of options or {{label: [...], text: [...]}}"
        )
    options = [str(o) for o in raw]
    answer = row.get(cfg.target_field)
    if labels is not None and answer in labels:
        return options, options[labels.index(answer)]
    if isinstance(answer, int) and 0 <= answer < len(options):
        return options, options[answer]
    if isinstance(answer, str) and len(answer) == 1 and 0 <= LETTERS.find(answer) < len(options):
        return options, options[LETTERS.index(answer)]
    if str(answer) in options:
        return options, str(answer)
    raise PeftlabError(
        f"{where}: answer {answer!r} in '{cfg.target_field}' matches no option (labels {labels}, options {options})"
    )


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@lru_cache(maxsize=64)
def schema_of(db_path: str) -> str:
    """The database's CREATE TABLE statements: the schema a text-to-SQL prompt shows as {schema}."""
    if not Path(db_path).is_file():
        what_is = "a folder, not a file" if Path(db_path).is_dir() else "file not found"
        raise PeftlabError(f"task.database: {what_is}: {db_path}")
    conn = sqlite3.connect(f"file:{quote(str(Path(db_path).resolve()))}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL").fetchall()
    finally:
        conn.close()
    return "\n".join(r[0].strip() + ";" for r in rows)


def _database(cfg: TaskConfig, row: dict, base: Path, where: str) -> str | None:
    if cfg.database is None:
        return None
    try:
        path = Path(cfg.database.format(**row))
    except KeyError as e:
        raise PeftlabError(f"{where}: task.database uses field {e} which the row lacks") from None
    return str(path if path.is_absolute() else base / path)


def _examples(cfg: TaskConfig, rows: list[dict], source: str, base: Path = Path(".")) -> list[Example]:
    id_field = _id_field(cfg, rows, source)
    by_input = cfg.merge_duplicate_ids and cfg.merge_by == "input"
    out: list[Example] = []
    first: dict[str, Example] = {}  # merge key (the id, or the prompt with merge_by: input) -> its example
    id_row: dict[str, int] = {}  # id -> the row it was first seen at
    for n, row in enumerate(rows):
        where = f"{source} row {n + 1}"
        example = _example(cfg, row, where, base, _row_id(row, id_field, n, where))
        key = example.prompt if by_input else example.id
        if key in first and cfg.merge_duplicate_ids:
            # Every row's references, repeats included: the hub's DialogSum test then gives the same
            # references as the original release's summary1..3 (ten dialogues repeat a summary there).
            first[key].references += example.references
            continue
        if example.id in id_row:
            raise PeftlabError(
                f"{where}: duplicate id {example.id!r} in field '{id_field}' (first seen at row "
                f"{id_row[example.id]}); ids must be unique, or set task.merge_duplicate_ids: true "
                "to make rows sharing an id (merge_by: id) or a prompt (merge_by: input) one example "
                "with several references"
            )
        first[key], id_row[example.id] = example, n + 1
        out.append(example)
    return out


def _id_field(cfg: TaskConfig, rows: list[dict], source: str) -> str | None:
    """The column that names examples: the first of task.id_field the data has. A named column
    that is absent is an error: numbering rows instead would silently split an example that
    several rows share (the hub's DialogSum test) into single-reference copies."""
    if cfg.id_field is None or not rows:
        return None
    names = [cfg.id_field] if isinstance(cfg.id_field, str) else cfg.id_field
    found = next((f for f in names if f in rows[0]), None)
    if found is None:
        raise PeftlabError(
            f"{source}: task.id_field {' / '.join(map(repr, names))} is not a column of this data (columns "
            f"found: {', '.join(map(str, rows[0]))}); set task.id_field to the column that names each example "
            "(a list is tried in turn), or to null to number the rows"
        )
    return found


def _row_id(row: dict, id_field: str | None, n: int, where: str) -> str:
    if id_field is None:
        return str(n)
    value = row.get(id_field)
    if value is None or value == "":
        raise PeftlabError(
            f"{where}: no id in field '{id_field}' (task.id_field); every row needs one, "
            "or set task.id_field to null to number the rows"
        )
    return str(value)


def _example(cfg: TaskConfig, row: dict, where: str, base: Path, ex_id: str) -> Example:
    if chat.is_chat(cfg):
        return chat.example(cfg, row, ex_id)
    choices = gold = None
    if cfg.output_type == "multiple_choice":
        if cfg.choices_field is None:
            raise PeftlabError("task.choices_field is required with output_type: multiple_choice")
        choices, gold = _choices(cfg, row, where)
        row = {**row, "options": "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(choices))}
    database = _database(cfg, row, base, where)
    if database is not None and "{schema}" in cfg.input_template and "schema" not in row:
        row = {**row, "schema": schema_of(database)}
    try:
        prompt = cfg.input_template.format(**row)
    except KeyError as e:
        raise PeftlabError(
            f"{where}: task.input_template uses field {e} which the row lacks (fields: {', '.join(row)})"
        ) from None
    except (ValueError, IndexError) as e:
        raise PeftlabError(
            f"task.input_template: invalid format string ({e}); "
            "use {field} for fields and {{ }} for literal braces"
        ) from None
    target, references = (gold, [gold]) if choices is not None else _target(cfg, row, where)
    return Example(ex_id, prompt, target, references, choices, database)


def _target(cfg: TaskConfig, row: dict, where: str) -> tuple[str, list[str]]:
    """(training target, references) of a row; references default to the target."""
    references = []
    for f in cfg.reference_fields or [cfg.target_field]:
        value = row.get(f)  # a list field holds several references (GeoQuery's SQL variants)
        references += [str(v) for v in (value if isinstance(value, list) else [value]) if v not in (None, "")]
    target = row.get(cfg.target_field)
    if target in (None, ""):
        if not references:
            if cfg.target_field in row:  # present but null or empty: not a missing field
                raise PeftlabError(f"{where}: target field '{cfg.target_field}' is {target!r}; give every row a target")
            raise PeftlabError(f"{where}: no target field '{cfg.target_field}' (fields: {', '.join(row)})")
        target = references[0]
    if isinstance(cfg.label_words, dict):  # e.g. SST-2's 0/1 -> negative/positive
        words = {str(k): v for k, v in cfg.label_words.items()}
        target = words.get(str(target), str(target))
        references = [words.get(r, r) for r in references]
    return str(target), references or [str(target)]
