"""Classification and multiple choice end to end: tasks from files, scored by log-likelihood."""

import csv
import json

import pytest
import yaml

from peftlab.config import load_config
from peftlab.errors import PeftlabError
from peftlab.tasks.base import build_task
from peftlab.training.train import train


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def sentiment_task(tmp_path):
    good, bad = ["great", "lovely", "superb", "fine"], ["awful", "poor", "dreadful", "grim"]
    rows = [{"sentence": f"a {w} film", "label": 1} for w in good] + [
        {"sentence": f"a {w} film", "label": 0} for w in bad
    ]
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / f"{split}.jsonl", rows)
    return {
        "name": "sst2-mini",
        "data_files": {s: str(tmp_path / f"{s}.jsonl") for s in ("train", "validation", "test")},
        "input_template": "Review: {sentence}\nSentiment:",
        "target_field": "label",
        "metric": "accuracy",
        "output_type": "classify",
        "label_words": {0: "negative", 1: "positive"},
        "dedupe": "off",  # the test is the training set on purpose: can LoRA learn 8 sentences?
    }


def config(tmp_path, task, arch="tiny-llama", steps=30):
    raw = {
        "name": "cls",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": arch},
        "method": {"name": "lora", "rank": 8, "dropout": 0.0},
        "task": task,
        "train": {"max_steps": steps, "batch_size": 8, "lr": 1e-2},
        "eval": {"batch_size": 8},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    return load_config(tmp_path / "c.yaml")


# tiny-t5 (byte-level, 32 wide) does not separate sentences that differ in one word within a few
# hundred LoRA steps (greedy generation agrees with the ranking there): T5 checks the plumbing only.
@pytest.mark.parametrize("arch,steps", [("tiny-llama", 30), ("tiny-t5", 5)])
def test_classification_predictions_are_labels_and_training_helps(tmp_path, sentiment_task, arch, steps):
    run = train(config(tmp_path, sentiment_task, arch, steps))
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    assert {r["prediction"] for r in rows} <= {"negative", "positive"}
    assert {r["reference"] for r in rows} == {"negative", "positive"}
    s = json.loads((run / "summary.json").read_text())
    assert s["primary_metric"] == "accuracy" and "macro_f1" in s["test"]
    assert s["test"]["accuracy"] == pytest.approx(sum(r["prediction"] == r["reference"] for r in rows) / len(rows))
    if arch == "tiny-llama":
        assert s["test"]["accuracy"] == 1.0  # LoRA learns 8 training sentences that are also the test


def test_label_outside_the_label_set_is_a_clear_error(tmp_path, sentiment_task):
    sentiment_task["label_words"] = {0: "negative", 2: "positive"}
    with pytest.raises(PeftlabError, match=r"label '1' is not a key of task.label_words \[0, 2\]"):
        build_task(config(tmp_path, sentiment_task).task)


def test_multiple_choice_commonsense_qa_format(tmp_path):
    rows = [
        {
            "id": f"q{i}",
            "question": f"Which word repeats {w}?",
            "choices": {"label": ["A", "B", "C"], "text": [w, f"{w}{w}x", "zz"]},
            "answerKey": "A",
        }
        for i, w in enumerate(["cat", "dog", "owl", "bee", "ant", "elk"])
    ]
    write_jsonl(tmp_path / "d.jsonl", rows)
    task = {
        "name": "mc",
        "data_files": {s: str(tmp_path / "d.jsonl") for s in ("train", "validation", "test")},
        "input_template": "{question}\n{options}\nAnswer:",
        "target_field": "answerKey",
        "choices_field": "choices",
        "metric": "accuracy",
        "output_type": "multiple_choice",
        "id_field": "id",
        "dedupe": "off",  # one file for every split: the plumbing, not generalisation
    }
    built = build_task(config(tmp_path, task).task)
    ex = built.split("test")[0]
    assert ex.choices == ["cat", "catcatx", "zz"] and ex.target == "cat"
    assert ex.prompt == "Which word repeats cat?\nA. cat\nB. catcatx\nC. zz\nAnswer:"
    run = train(config(tmp_path, task, steps=40))
    preds = list(csv.DictReader((run / "predictions.csv").open()))
    assert all(p["prediction"] in r["choices"]["text"] for p, r in zip(preds, rows))
    assert json.loads((run / "summary.json").read_text())["test"]["accuracy"] == 1.0
