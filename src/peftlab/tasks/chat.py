"""Chat and instruction data (task.format: messages, alpaca, sharegpt): each record is a conversation, and
becomes one example whose prompt is the conversation up to its final assistant turn (a Conversation,
tasks/conversation.py, formatted by the model's chat template in models/backbone.py) and whose target
and reference are that final turn.

The loss falls on the final assistant turn only: earlier assistant turns are part of the prompt, so
their labels are ignored like every prompt token's. A malformed record is an error naming its file and
line and what is allowed, or (task.bad_records: drop) is dropped and counted in the log.
"""

from __future__ import annotations

import json
from collections import Counter

from peftlab.config import TaskConfig
from peftlab.data.readers import where as row_where
from peftlab.errors import PeftlabError
from peftlab.tasks.conversation import ROLES, Conversation
from peftlab.tasks.task import Example

FORMATS = ("messages", "alpaca", "sharegpt")
DEFAULT_FIELD = {"messages": "messages", "sharegpt": "conversations"}
# ShareGPT's speakers; 'user' and 'assistant' are also found in its copies.
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
# Settings of field-based tasks that a conversation has no use for: given with a chat format, a mistake.
UNUSED = ("input_template", "target_field", "reference_fields", "choices_field", "label_words")


class BadRecord(Exception):
    """A malformed record: ``reason`` is what the drop count groups by, ``detail`` what the error says."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def is_chat(cfg: TaskConfig) -> bool:
    return cfg.format in FORMATS


def check_config(cfg: TaskConfig) -> None:
    """Refuse the settings a chat format cannot honour, naming each and why."""
    for name in UNUSED:
        if getattr(cfg, name) is not None:
            raise PeftlabError(
                f"task.{name}: not used with task.format: {cfg.format} (the prompt is the conversation up to "
                "its final assistant turn, the target that turn); remove it"
            )
    if cfg.output_type != "generate":
        raise PeftlabError(
            f"task.output_type: {cfg.output_type} is not possible with task.format: {cfg.format}; allowed: "
            "generate (the final assistant turn is generated and scored by task.metric)"
        )
    if cfg.shots:
        raise PeftlabError(
            f"task.shots: {cfg.shots}: k-shot demonstrations are plain text and a {cfg.format} prompt is a "
            "conversation; set shots: 0 (earlier turns of a record already serve as context)"
        )
    if cfg.reader != "rows":
        raise PeftlabError(f"task.reader: {cfg.reader} is not possible with task.format: {cfg.format}; allowed: rows")
    if cfg.messages_field is not None and cfg.format == "alpaca":
        raise PeftlabError(
            "task.messages_field: alpaca records have fixed fields (instruction, input, output); remove it"
        )


def input_template(cfg: TaskConfig) -> str:
    """A template over the fields that hold the conversation: what validation held out of train is kept
    disjoint from train by (tasks/holdout.py reads the fields a template names)."""
    if cfg.format == "alpaca":
        return "{instruction}\n{input}"
    return "{" + (cfg.messages_field or DEFAULT_FIELD[cfg.format]) + "}"


def good_rows(cfg: TaskConfig, rows: list[dict], source: str, log) -> list[dict]:
    """The rows that are well-formed conversations. A malformed one is an error naming its file and line,
    or with task.bad_records: drop is left out, and the log counts what was dropped and why."""
    kept, reasons = [], Counter()
    for n, row in enumerate(rows):
        try:
            turns(cfg, row)
        except BadRecord as bad:
            if cfg.bad_records == "error":
                raise PeftlabError(
                    f"{row_where(row, f'{source} row {n + 1}')}: {bad.detail} (task.format: {cfg.format}); fix "
                    "the record, or set task.bad_records: drop to drop such records and count them"
                ) from None
            reasons[bad.reason] += 1
            continue
        kept.append(row)
    if reasons:
        counts = ", ".join(f"{k} {reason}" for reason, k in reasons.most_common())
        log(f"task {cfg.name} {source}: dropped {len(rows) - len(kept)} of {len(rows)} records: {counts}")
    if rows and not kept:
        raise PeftlabError(f"{source}: every one of its {len(rows)} records was dropped as malformed ({counts})")
    return kept


def example(cfg: TaskConfig, row: dict, ex_id: str) -> Example:
    """The example of a well-formed record: the turns before the final assistant turn, and that turn."""
    messages = turns(cfg, row)
    answer = messages[-1]["content"]
    return Example(ex_id, Conversation(messages[:-1]), answer, [answer])


def turns(cfg: TaskConfig, row: dict) -> list[dict[str, str]]:
    """A record's conversation as [{role, content}] (roles system/user/assistant), ending with the final
    assistant turn; BadRecord says what is wrong with a malformed one."""
    messages = _alpaca(row) if cfg.format == "alpaca" else _listed(cfg, row)
    if not messages:
        raise BadRecord("empty conversation", "the conversation has no turns; give at least a user turn and an answer")
    if messages[-1]["role"] != "assistant":
        raise BadRecord(
            "no final assistant turn",
            f"the last turn is a {messages[-1]['role']} turn; the conversation must end with the assistant turn "
            "that is learned and scored",
        )
    if not messages[-1]["content"].strip():
        raise BadRecord("empty final assistant turn", "the final assistant turn is empty; it is the target")
    if not any(m["role"] == "user" for m in messages[:-1]):
        raise BadRecord("no user turn", "no user turn before the final assistant turn; nothing asks for the answer")
    return messages


def _listed(cfg: TaskConfig, row: dict) -> list[dict[str, str]]:
    """The turns of a messages or sharegpt record."""
    field = cfg.messages_field or DEFAULT_FIELD[cfg.format]
    role_key, content_key = ("role", "content") if cfg.format == "messages" else ("from", "value")
    names = dict(zip(ROLES, ROLES)) if cfg.format == "messages" else SHAREGPT_ROLES
    value = row.get(field)
    if isinstance(value, str) and value.lstrip().startswith("["):  # a CSV cell holding the turns as JSON
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise BadRecord("turns not JSON", f"field '{field}' is not a JSON list ({e.msg})") from None
    if value is None:
        raise BadRecord(
            f"no field '{field}'",
            f"no field '{field}' (fields: {', '.join(map(str, row))}); "
            "set task.messages_field to the field holding the turns",
        )
    if not isinstance(value, list):
        raise BadRecord(
            "turns not a list",
            f"field '{field}' is a {type(value).__name__}; allowed: a list of {{{role_key}, {content_key}}}",
        )
    out = []
    for i, turn in enumerate(value, 1):
        if not isinstance(turn, dict):
            raise BadRecord(
                "turn not an object", f"turn {i} is a {type(turn).__name__}; allowed: {{{role_key}, {content_key}}}"
            )
        role, content = turn.get(role_key), turn.get(content_key)
        if role not in names:
            raise BadRecord(f"unknown role {role!r}", f"turn {i} has {role_key} {role!r}; allowed: {', '.join(names)}")
        if not isinstance(content, str):
            raise BadRecord(
                "content not a string", f"turn {i}'s {content_key} is {type(content).__name__}, not a string"
            )
        out.append({"role": names[role], "content": content})
    return out


def _alpaca(row: dict) -> list[dict[str, str]]:
    """An alpaca record as a conversation: [system,] user (the instruction, then the input if any), assistant."""
    for name in ("instruction", "output"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            what = "missing" if value is None else f"{type(value).__name__} {value!r}"
            raise BadRecord(f"no {name}", f"field '{name}' is {what}; allowed: a non-empty string")
    for name in ("input", "system"):
        if row.get(name) is not None and not isinstance(row[name], str):
            raise BadRecord(
                f"{name} not a string", f"field '{name}' is {type(row[name]).__name__}; allowed: a string or nothing"
            )
    user = row["instruction"] + (f"\n\n{row['input']}" if (row.get("input") or "").strip() else "")
    system = [{"role": "system", "content": row["system"]}] if (row.get("system") or "").strip() else []
    return [*system, {"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
