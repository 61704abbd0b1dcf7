"""`peftlab data` on small fixtures whose numbers can be checked by hand: the tiny models tokenize
bytes (ByT5), so a text's token count is its UTF-8 length, and a target adds one EOS."""

import json

import pytest
import yaml

from peftlab.cli import main
from peftlab.errors import PeftlabError
from peftlab.inspect.data import data_source, data_stats, target_length
from peftlab.models.backbone import IGNORE, Backbone
from peftlab.models.tiny import tiny_model
from peftlab.tasks.base import build_task

TEXTS = ["i feel low", "what a day", "so happy now", "i love it", "grr", "ok"]
LABELS = [0, 0, 1, 2, 2, 2]  # sadness x2, joy x1, love x3
TEMPLATE = (
    "Which emotion does this text express: sadness, joy, love, anger, fear or surprise?\n\nText: {text}"
    "\n\nAnswer with one word."
)  # the packaged emotion task's


@pytest.fixture
def emotion_dir(tmp_path):
    folder = tmp_path / "emotion"
    folder.mkdir()
    for split in ("train", "validation", "test"):  # the scored splits' texts are not training texts (task.dedupe)
        rows = [{"text": t if split == "train" else f"{t} {split}", "label": lab} for t, lab in zip(TEXTS, LABELS)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_lengths_labels_and_limits_match_hand_counts(emotion_dir, tmp_path):
    prompts = [TEMPLATE.format(text=t) for t in TEXTS]
    limit = len(prompts[0].encode())  # "i feel low" (10 bytes): exactly at the limit, not over
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "tiny-llama"},
                "method": {"name": "none"},
                "task": {
                    "name": "emotion",
                    "data_dir": str(emotion_dir),
                    "max_source_tokens": limit,
                    "max_target_tokens": 5,
                },
            }
        )
    )
    task_cfg, model_cfg = data_source(str(config))
    assert model_cfg.name == "tiny-llama" and task_cfg.max_source_tokens == limit
    model, tok = tiny_model("tiny-llama")
    bb = Backbone(model=model, tokenizer=tok, source="tiny-llama")
    stats = data_stats(bb, task_cfg, build_task(task_cfg), "train", n_examples=2)
    assert stats["input_lengths"] == [len(p.encode()) for p in prompts]
    words = ["sadness", "sadness", "joy", "love", "love", "love"]
    assert stats["target_lengths"] == [len(w) + 1 for w in words]  # + EOS
    # over max_source_tokens: the texts longer than "i feel low" ("what a day" has the same 10 bytes)
    assert stats["inputs_over_limit"] == sum(len(t) > 10 for t in TEXTS) == 1
    assert stats["targets_over_limit"] == 2  # max_target_tokens 5: "sadness" + EOS (8) twice; "love" + EOS is 5
    assert stats["labels"] == {"sadness": 2, "joy": 1, "love": 3, "anger": 0, "fear": 0, "surprise": 0}
    assert stats["template_tokens"] == len("<user>") + len("\n<assistant>")
    first = stats["formatted"][0]
    assert first["input"] == f"<user>{prompts[0]}\n<assistant>"
    assert first["target"] == "sadn</s>"  # as training sees it: cut to max_target_tokens (5) with the EOS


def test_target_length_is_what_encode_labels(emotion_dir):
    for arch in ("tiny-llama", "tiny-t5"):
        model, tok = tiny_model(arch)
        bb = Backbone(model=model, tokenizer=tok, source=arch)
        for target in ("joy", "a longer target"):
            labels = bb.encode("prompt", target, max_target_tokens=10**6)["labels"]
            assert target_length(bb, target) == sum(t != IGNORE for t in labels)


def test_data_command_with_a_task_name_writes_plots_and_json(emotion_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "emotion",
                "--data-dir",
                str(emotion_dir),
                "--model",
                "tiny-llama",
                "--split",
                "test",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr()
    assert printed.out.split() == [str(out / f) for f in ("lengths-test.png", "labels-test.png", "data-test.json")]
    assert "examples per label" in printed.err and "as the model sees it" in printed.err
    stats = json.loads((out / "data-test.json").read_text())
    assert stats["labels"]["love"] == 3 and stats["examples"] == 6
    assert (out / "lengths-test.png").read_bytes()[:4] == b"\x89PNG"


def test_multiple_choice_counts_answers_per_letter(tmp_path, capsys):
    folder = tmp_path / "csqa"
    folder.mkdir()
    rows = [
        {
            "id": str(i),
            "question": f"q{i}?",
            "answerKey": key,
            "choices": {"label": list("ABCDE"), "text": ["a", "b", "c", "d", "e"]},
        }
        for i, key in enumerate("ABBEB")
    ]
    (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert (
        main(
            [
                "data",
                "commonsense_qa",
                "--data-dir",
                str(folder),
                "--model",
                "tiny-gpt-neo",
                "--split",
                "test",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    stats = json.loads((tmp_path / "out" / "data-test.json").read_text())
    assert stats["labels"] == {"A": 1, "B": 3, "E": 1}


def test_unknown_task_and_missing_split_are_clear_errors(emotion_dir, tmp_path, capsys):
    with pytest.raises(PeftlabError, match="did you mean 'emotion'"):
        data_source("emotio")
    folder = tmp_path / "only_test"
    folder.mkdir()
    (folder / "validation.jsonl").write_text(
        json.dumps({"id": "0", "question": "q", "answerKey": "A", "choices": {"label": ["A"], "text": ["a"]}}) + "\n"
    )
    assert (
        main(
            ["data", "commonsense_qa", "--data-dir", str(folder), "--model", "tiny-llama", "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "split 'train' is missing" in capsys.readouterr().err
