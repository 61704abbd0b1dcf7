"""Contextual calibration (Zhao et al. 2021) for log-likelihood scoring: the answers' prior, measured on
content-free inputs, is taken out of every score."""

from __future__ import annotations

import csv
import math

import pytest

from peftlab.comparison.compare import load_compare, run_configs
from peftlab.config import TaskConfig
from peftlab.errors import PeftlabError
from peftlab.tasks import loglik
from peftlab.tasks.base import build_task
from peftlab.tasks.calibration import calibrated_choice, calibrated_label, content_free_prompts, label_prior
from peftlab.training.train import train
from tests.test_compare import experiment
from tests.test_train import make_config

WORDS = ["apple", "river", "stone", "cloud", "maple", "tiger", "ocean", "piano"]
WORDS += ["lemon", "amber", "cedar", "delta", "eagle", "flint", "grape", "honey"]


def test_content_free_prompts_fill_every_field_with_each_token():
    assert content_free_prompts("Q: {question}\nOptions: {options}\nA:", "demo\n\n") == [
        "demo\n\nQ: N/A\nOptions: N/A\nA:",
        "demo\n\nQ: \nOptions: \nA:",
        "demo\n\nQ: [MASK]\nOptions: [MASK]\nA:",
    ]


def test_a_label_the_model_favours_regardless_of_input_loses_its_head_start():
    prior = label_prior([[(math.log(0.9), 1), (math.log(0.1), 1)], [(math.log(0.7), 1), (math.log(0.3), 1)]])
    assert prior == pytest.approx([math.log(0.8), math.log(0.2)])
    row = [(-1.0, 1), (-1.5, 1)]  # uncalibrated: label 0 wins
    # calibrated: -1.0 - log 0.8 = -0.777 against -1.5 - log 0.2 = 0.109
    assert calibrated_label(row, prior) == 1
    assert calibrated_label(row, [0.0, 0.0]) == 0  # a flat prior changes nothing


def test_a_calibrated_choice_is_length_normalised_like_an_uncalibrated_one():
    # option 0: (-4 - -3) / 2 = -0.5; option 1: (-2 - -1.8) / 1 = -0.2
    assert calibrated_choice([(-4.0, 2), (-2.0, 1)], [-3.0, -1.8]) == 1
    assert calibrated_choice([(-4.0, 2), (-2.0, 1)], [-6.0, -1.8]) == 0  # (-4 - -6) / 2 = 1.0


def test_classify_and_multiple_choice_take_the_prior_out(monkeypatch):
    """The model scores 'yes' far above 'no' after any input, content-free included; calibration
    keeps only what the input adds."""

    def fake(backbone, model, prompts, continuations, batch_size=16, max_source_tokens=512, progress=None, **_):
        out = []
        for p, conts in zip(prompts, continuations):
            bias = {"yes": -0.2, "no": -3.0}
            lift = {"yes": 0.0, "no": 2.0} if "good" in p else {"yes": 0.5, "no": 0.0} if "plain" in p else {}
            out.append([(bias[c] + lift.get(c, 0.0), 1) for c in conts])
        return out

    monkeypatch.setattr(loglik, "continuation_logprobs", fake)
    prompts = ["this is good", "this is plain"]
    assert loglik.classify(None, None, prompts, ["yes", "no"]) == ["yes", "yes"]
    cf = content_free_prompts("this is {x}")
    assert loglik.classify(None, None, prompts, ["yes", "no"], content_free=cf) == ["no", "yes"]
    assert loglik.multiple_choice(None, None, prompts, [["yes", "no"]] * 2) == [0, 0]
    assert loglik.multiple_choice(None, None, prompts, [["yes", "no"]] * 2, content_free=cf) == [1, 0]


def test_calibrate_needs_a_task_scored_by_log_likelihood(copy_task):
    with pytest.raises(PeftlabError, match="task.calibrate.*output_type classify or multiple_choice"):
        build_task(TaskConfig(**copy_task, calibrate=True))
    task = build_task(TaskConfig(**copy_task, calibrate=True, output_type="classify", label_words=WORDS, shots=2))
    demos = task.split("test")[0].prompt[: -len("Repeat: grape")]
    assert task.content_free == [demos + "Repeat: N/A", demos + "Repeat: ", demos + "Repeat: [MASK]"]


def test_compare_adds_a_calibrated_zero_shot_row_where_it_applies(tmp_path, copy_task):
    classify = {**copy_task, "output_type": "classify", "label_words": WORDS}
    path = experiment(tmp_path, classify, seeds=[0])
    labels = {label: cfg["task"].get("calibrate") for label, cfg in run_configs(load_compare(path), "exp.yaml")}
    assert labels == {"zero_shot": None, "lora": None, "prompt_tuning": None, "zero_shot+calibrated": True}
    path = experiment(tmp_path, copy_task, seeds=[0])  # generation: nothing to calibrate
    assert "zero_shot+calibrated" not in {label for label, _ in run_configs(load_compare(path), "exp.yaml")}


def test_a_calibrated_zero_shot_run_scores_with_a_real_model(tmp_path, copy_task):
    task = {**copy_task, "output_type": "classify", "label_words": WORDS, "calibrate": True}
    run_dir = train(make_config(tmp_path, task, "tiny-gpt-neo", {"name": "none"}))
    rows = list(csv.DictReader((run_dir / "predictions.csv").open()))
    assert len(rows) == 2 and all(r["prediction"] in WORDS for r in rows)
