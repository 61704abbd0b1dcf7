"""Chat and instruction data (task.format: messages, alpaca, sharegpt): records to examples, malformed
records, the loss on the final assistant turn only, and a comparison on conversations end to end."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from peftlab.config import TaskConfig
from peftlab.errors import PeftlabError
from peftlab.models.backbone import IGNORE, Backbone
from peftlab.models.tiny import tiny_model
from peftlab.tasks.base import build_task
from peftlab.tasks.conversation import Conversation

DATA = Path(__file__).resolve().parents[1] / "data"


def chat_task(fmt: str, path: Path | str, log=None, **over):
    """A task training and scored on one file (dedupe: off, so that the same file can be both)."""
    files = {"train": str(path), "test": str(path)}
    cfg = TaskConfig(name="chat", format=fmt, data_files=files, id_field="id", **{"dedupe": "off", **over})
    return build_task(cfg, log)


def by_id(task) -> dict[str, tuple]:
    examples = [e for split in task.splits.values() for e in split]
    return {e.id: (str(e.prompt), e.prompt.messages, e.target, e.references) for e in examples}


def backbone(name: str) -> Backbone:
    model, tok = tiny_model(name)
    return Backbone(model=model, tokenizer=tok, source=name)


def write(tmp_path: Path, records: list, name: str = "bad.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(("" if r is None else json.dumps(r)) + "\n" for r in records))
    return path


# ---- parsing --------------------------------------------------------------------------------------------
def test_the_three_formats_give_the_same_examples():
    messages = by_id(chat_task("messages", DATA / "chat_messages.jsonl"))
    sharegpt = by_id(chat_task("sharegpt", DATA / "chat_sharegpt.jsonl"))
    alpaca = by_id(chat_task("alpaca", DATA / "chat_alpaca.jsonl"))
    assert len(messages) == 16 and sharegpt == messages
    # Alpaca has one exchange per record: its records are the single-turn conversations, input included.
    assert len(alpaca) == 11 and alpaca == {k: messages[k] for k in alpaca}
    prompt, turns, target, refs = messages["c05"]  # system prompt and three exchanges
    assert target == "A cherry." and refs == ["A cherry."]
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert turns[-1]["content"] == "One that is red?" and prompt.endswith("User: One that is red?\nAssistant:")
    assert messages["c02"][1][0]["content"] == "Translate into Spanish.\n\nthank you"  # alpaca's input


def test_messages_field_can_be_renamed_and_csv_cells_hold_the_turns_as_json(tmp_path):
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    path = write(tmp_path, [{"id": "a", "chat": turns}], "renamed.jsonl")
    (e,) = chat_task("messages", path, messages_field="chat").split("test")
    assert e.prompt.messages == turns[:1] and e.target == "Hello"
    csv = tmp_path / "chat.csv"
    csv.write_text('id,messages\na,"' + json.dumps(turns).replace('"', '""') + '"\n')
    (c,) = chat_task("messages", csv).split("test")
    assert c.prompt.messages == e.prompt.messages and c.target == "Hello"


def test_a_conversation_pickles_with_its_turns():
    conv = Conversation([{"role": "user", "content": "Hi"}])
    back = pickle.loads(pickle.dumps(conv))
    assert back == "User: Hi\nAssistant:" and back.messages == conv.messages


# ---- malformed records ----------------------------------------------------------------------------------
GOOD = {"id": "ok", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
BAD = [
    ("messages", {"messages": [{"role": "bot", "content": "x"}]}, r"turn 1 has role 'bot'; allowed: system, user"),
    ("messages", {"messages": []}, r"the conversation has no turns; give at least a user turn"),
    ("messages", {"messages": [{"role": "user", "content": "Hi"}]}, r"the last turn is a user turn; .* must end"),
    ("messages", {"messages": [{"role": "user", "content": 7}]}, r"turn 1's content is int, not a string"),
    ("messages", {"text": "hi"}, r"no field 'messages' \(fields: id, text\); set task.messages_field"),
    (
        "sharegpt",
        {"conversations": [{"from": "bot", "value": "x"}]},
        "turn 1 has from 'bot'; allowed: system, human, user, gpt, assistant",
    ),
    ("alpaca", {"input": "x", "output": "y"}, r"field 'instruction' is missing; allowed: a non-empty string"),
    ("alpaca", {"instruction": "x", "output": ""}, r"field 'output' is str ''; allowed: a non-empty string"),
]


@pytest.mark.parametrize("fmt, record, message", BAD)
def test_a_malformed_record_names_its_file_and_line(tmp_path, fmt, record, message):
    good = GOOD if fmt == "messages" else {"id": "ok", "instruction": "Hi", "output": "Hello"}
    if fmt == "sharegpt":
        good = {"id": "ok", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    # Line 5: a blank line and three good records before it; validation is then drawn out of train,
    # which reorders the rows, and the line must still be the file's.
    records = [{**good, "id": f"g{i}"} for i in range(3)]
    path = write(tmp_path, [records[0], None, records[1], records[2], {"id": "bad", **record}])
    with pytest.raises(PeftlabError, match=rf"{path}:5: {message}") as err:
        build_task(TaskConfig(name="chat", format=fmt, data_files={"train": str(path)}, id_field="id"))
    assert f"task.format: {fmt}" in str(err.value) and "task.bad_records: drop" in str(err.value)


def test_a_malformed_parquet_record_is_named_by_its_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    turns = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], []]
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "messages": turns}), path)
    with pytest.raises(PeftlabError, match=rf"{path} row 2: the conversation has no turns"):
        chat_task("messages", path)


def test_bad_records_drop_leaves_them_out_and_counts_them_by_reason(tmp_path):
    user = {"role": "user", "content": "Hi"}
    bad = [
        {"id": "b1", "messages": [user]},
        {"id": "b2", "messages": [user, {"role": "assistant", "content": "x"}, user]},
        {"id": "b3", "messages": [{"role": "bot", "content": "x"}]},
    ]
    path = write(tmp_path, [{**GOOD, "id": f"g{i}"} for i in range(9)] + bad)
    lines: list[str] = []
    task = chat_task("messages", path, lines.append, bad_records="drop")
    assert sorted(e.id for e in task.split("test")) == [f"g{i}" for i in range(9)]
    assert f"task chat {path}: dropped 3 of 12 records: 2 no final assistant turn, 1 unknown role 'bot'" in lines
    everything_bad = write(tmp_path, bad, "all_bad.jsonl")
    with pytest.raises(PeftlabError, match=r"every one of its 3 records was dropped as malformed"):
        chat_task("messages", everything_bad, bad_records="drop")


@pytest.mark.parametrize(
    "over, message",
    [
        ({"input_template": "{x}"}, r"task.input_template: not used with task.format: messages"),
        ({"output_type": "classify"}, r"task.output_type: classify is not possible .* allowed: generate"),
        ({"shots": 2}, r"task.shots: 2: k-shot demonstrations are plain text"),
    ],
)
def test_settings_a_conversation_cannot_use_are_refused(over, message):
    with pytest.raises(PeftlabError, match=message):
        chat_task("messages", DATA / "chat_messages.jsonl", **over)


# ---- formatting and the loss ----------------------------------------------------------------------------
def multi_turn():
    return {e.id: e for e in chat_task("messages", DATA / "chat_messages.jsonl").split("test")}["c05"]


def test_a_conversation_goes_through_the_chat_template_turn_by_turn_or_the_plain_one():
    e = multi_turn()
    system = "You are a concise assistant. Answer in a few words."
    assert backbone("tiny-llama").format_prompt(e.prompt) == (
        f"<system>{system}\n<user>Give me a fruit that is yellow.\n<assistant>A banana.\n"
        "<user>Another one?\n<assistant>A lemon.\n<user>One that is red?\n<assistant>"
    )
    plain = (
        f"System: {system}\nUser: Give me a fruit that is yellow.\nAssistant: A banana.\n"
        "User: Another one?\nAssistant: A lemon.\nUser: One that is red?\nAssistant:"
    )
    assert backbone("tiny-gpt-neo").format_prompt(e.prompt) == plain + "\n"  # no chat template
    assert backbone("tiny-t5").format_prompt(e.prompt) == plain  # the encoder reads it as plain text
    assert backbone("tiny-llama").format_prompt("hi") == "<user>hi\n<assistant>"  # plain prompts as before


def test_a_conversation_the_chat_template_refuses_is_an_error_naming_the_model():
    bb = backbone("tiny-llama")
    bb.tokenizer.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        + bb.tokenizer.chat_template
    )
    with pytest.raises(
        PeftlabError,
        match=r"tiny-llama: its chat template refuses .* turns system user .*"
        r"System role not supported.*model.chat_template: false",
    ):
        bb.format_prompt(multi_turn().prompt)


def test_only_the_final_assistant_turn_carries_loss():
    bb, e = backbone("tiny-llama"), multi_turn()
    f = bb.encode(e.prompt, e.target)
    ids, labels = f["input_ids"], f["labels"]
    answer = bb.tokenizer(e.target, add_special_tokens=False).input_ids + [bb.tokenizer.eos_token_id]
    n = len(answer)
    # Every system, user and earlier assistant token is ignored; the final turn and its EOS are learned.
    assert labels[:-n] == [IGNORE] * (len(ids) - n) and labels[-n:] == answer
    earlier = bb.tokenizer.decode(ids[:-n])  # the turns through the template, each in its own role
    assert earlier.startswith("<system>") and earlier.endswith("<user>One that is red?\n<assistant>")
    assert "<assistant>A banana.\n" in earlier and "<assistant>A lemon.\n" in earlier
    batch = bb.collate([f])
    with torch.no_grad():
        logits = bb.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0]
        summed = bb.kind.loss_sum(bb.model, None, batch)
    logp = torch.log_softmax(logits.float(), -1)
    by_hand = -sum(logp[p - 1, ids[p]] for p in range(len(ids) - n, len(ids)))
    torch.testing.assert_close(summed.float(), by_hand, rtol=1e-5, atol=1e-5)


def test_changing_an_earlier_turn_changes_context_not_what_is_learned():
    bb, e = backbone("tiny-llama"), multi_turn()
    turns = [dict(m) for m in e.prompt.messages]
    turns[1]["content"], turns[2]["content"] = "Name a long yellow fruit, please.", "A banana, peeled."
    a, b = bb.encode(e.prompt, e.target), bb.encode(Conversation(turns), e.target)
    assert a["input_ids"] != b["input_ids"]
    assert [x for x in a["labels"] if x != IGNORE] == [x for x in b["labels"] if x != IGNORE]


def test_a_long_conversation_loses_its_oldest_exchanges_first():
    bb, e = backbone("tiny-llama"), multi_turn()  # ByT5: one token per byte
    text = bb.tokenizer.decode(bb.prompt_ids(e.prompt, max_source_tokens=80))
    assert "One that is red?" in text and "concise assistant" in text  # the question answered, the system
    assert "fruit that is yellow" not in text and "A banana." not in text  # the oldest exchange went whole
    assert bb.truncated == 1 and not bb.too_long(e.prompt, 200) and bb.too_long(e.prompt, 80)
    short = bb.tokenizer.decode(bb.prompt_ids(e.prompt, max_source_tokens=20))
    assert "<system>" in short and short.endswith("<assistant>") and len(short) < 80


# ---- end to end -----------------------------------------------------------------------------------------
def test_compare_two_methods_on_conversations_writes_a_leaderboard(tmp_path):
    from peftlab.comparison.compare import compare

    lines = (DATA / "chat_messages.jsonl").read_text().splitlines(keepends=True)
    files = {}
    for split, part in (("train", lines[:12]), ("validation", lines[12:14]), ("test", lines[14:])):
        files[split] = str(tmp_path / f"{split}.jsonl")
        Path(files[split]).write_text("".join(part))
    exp = {
        "name": "chat",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "task": {"name": "chat", "format": "messages", "data_files": files, "id_field": "id", "max_new_tokens": 8},
        "budget": {"steps": 4},
        "evals": 1,
        "seeds": [0],
        "trackers": [],
        "train": {"batch_size": 4, "lr": 1e-2},
        "eval": {"batch_size": 4},
        "lr_search": "off",
        "methods": [{"name": "lora", "rank": 4, "dropout": 0.0}, {"name": "prompt_tuning", "num_virtual_tokens": 4}],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    folder = compare(path)
    board = json.loads((folder / "leaderboard.json").read_text())
    rows = board["rows"] if isinstance(board, dict) else board
    assert {r["label"] for r in rows} == {"lora", "prompt_tuning"}
    assert (folder / "leaderboard.md").is_file()
    summary = json.loads((folder / "lora-s0" / "summary.json").read_text())
    assert summary["steps"] == 4 and "rouge1" in json.dumps(summary["test"])
