"""Classification runs: the attributed output is the label word the model picks by log-likelihood
(what is scored), not free text."""

import csv
import json

import yaml

from peftlab.config import load_config
from peftlab.inspect import attribute
from peftlab.training.train import train

WORDS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def test_classify_run_attributes_its_predicted_label(tmp_path):
    data = tmp_path / "emotion"
    data.mkdir()
    rows = [{"text": t, "label": i % 6} for i, t in enumerate(["i feel low", "what a day", "so happy", "grr"])]
    for split in ("train", "validation", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "emo",
                "output_dir": str(tmp_path / "runs"),
                "model": {"name": "tiny-gpt-neo"},
                "method": {"name": "none"},
                "task": {"name": "emotion", "data_dir": str(data), "dedupe": "off"},  # the same rows in every split
            }
        )
    )
    run_dir = train(load_config(cfg))
    predicted = [row["prediction"] for row in csv.DictReader((run_dir / "predictions.csv").open())]
    for i in range(2):
        r = attribute(run_dir, "test", i, steps=32)
        assert r["output"] in WORDS and r["output"] == predicted[i]
        # an untrained model's label log-probability hardly depends on the input (f(x) - f(b) ~ 0.2
        # nats), so the gap is checked in nats here; relative gaps are tested in test_attribute.py
        assert r["completeness_gap"] < 0.05
