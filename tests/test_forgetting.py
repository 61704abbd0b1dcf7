"""Forgetting (forgetting.py): the LM loss on a text sample after training minus before."""

import json
import math

import pytest
import torch
import yaml

from peftlab.config import ForgettingConfig, load_config
from peftlab.errors import PeftlabError
from peftlab.measure.forgetting import lm_loss, sample
from peftlab.models.backbone import Backbone
from peftlab.models.tiny import tiny_model
from peftlab.training.train import train

TEXTS = ["the river runs past the old stone mill", "a cloud", "tiger, ocean, piano and lemon"]


def by_hand(arch: str, texts: list[str]) -> float:
    """Mean NLL per scored token, one text at a time, from the logits."""
    model, tok = tiny_model(arch)
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tok(text)["input_ids"]
            if arch == "tiny-t5":  # the first half is read, the second half scored
                half = len(ids) // 2
                logits = model(input_ids=torch.tensor([ids[:half]]), labels=torch.tensor([ids[half:]])).logits[0]
                targets = torch.tensor(ids[half:])
            else:
                logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
                targets = torch.tensor(ids[1:])
            total += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            count += len(targets)
    return total / count


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-t5"])
def test_lm_loss_equals_the_hand_computed_mean_nll_per_token(arch):
    model, tok = tiny_model(arch)
    bb = Backbone(model=model, tokenizer=tok, source=arch)
    # Batches of 2 with padding: the padding must not count.
    assert lm_loss(bb, model, TEXTS, max_tokens=64, batch_size=2) == pytest.approx(by_hand(arch, TEXTS), rel=1e-5)


def run(tmp_path, copy_task, name: str, method: dict, steps: int = 12):
    cfg = {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": method,
        "task": copy_task,
        "train": {"max_steps": steps, "batch_size": 4, "lr": 1e-2},
        "eval": {"batch_size": 4},
        # the trained task's own texts: allowed when said (in_domain), refused otherwise (tests below)
        "forgetting": {"task": copy_task, "split": "train", "examples": 5, "in_domain": True},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return json.loads((train(load_config(path)) / "summary.json").read_text())["forgetting"]


def test_a_run_records_the_loss_before_and_after_training(tmp_path, copy_task):
    zero = run(tmp_path, copy_task, "zero", {"name": "none"})
    full = run(tmp_path, copy_task, "full", {"name": "full"})
    prompt = run(tmp_path, copy_task, "prompt", {"name": "prompt_tuning", "num_virtual_tokens": 4})
    assert zero["examples"] == 5 and zero["task"] == "copy" and zero["split"] == "train"
    assert zero["in_domain"] is True  # the report names the column for it
    assert all(r["seconds"] > 0 for r in (zero, full, prompt))  # for the report's time split
    # Zero-shot changes nothing: no forgetting, exactly.
    assert zero["loss_after"] == zero["loss_before"]
    # Every run's "before" is the base model's, also for prompt tuning, whose untrained prompt
    # already changes the loss.
    assert full["loss_before"] == prompt["loss_before"] == zero["loss_before"]
    assert not math.isclose(full["loss_after"], full["loss_before"], rel_tol=1e-4)  # training moved it


def test_the_sample_is_prompt_and_target_of_the_first_examples(copy_task):
    texts = sample(ForgettingConfig(task=copy_task, split="train", examples=2))
    assert texts == ["Repeat: apple\napple", "Repeat: river\nriver"]


def test_a_bad_forgetting_task_is_an_error_before_the_run_starts(tmp_path, copy_task):
    cfg = {
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "task": copy_task,
        "train": {"max_steps": 2, "batch_size": 4},
        "forgetting": {"task": {**copy_task, "data_files": {"test": str(tmp_path / "missing.jsonl")}}},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(PeftlabError, match="missing.jsonl"):
        train(load_config(path))
    run_dir = tmp_path / "runs" / "copy-lora"
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "metrics.jsonl").exists()


def test_a_comparisons_forgetting_section_reaches_every_run(tmp_path, copy_task):
    from peftlab.comparison.compare import CompareConfig, run_configs

    cc = CompareConfig(
        name="cmp",
        output_dir=str(tmp_path),
        model={"name": "tiny-llama"},
        task=copy_task,
        budget={"steps": 2},
        methods=[{"name": "none"}, {"name": "lora"}],
        forgetting={"task": copy_task, "examples": 3},
    )
    runs = run_configs(cc, "cmp.yaml")
    assert [r["forgetting"]["examples"] for _, r in runs] == [3, 3]


def test_a_packaged_task_is_resolved_for_forgetting_as_for_the_run(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "tiny-llama"},
                "task": {"name": "sql_demo"},
                "train": {"max_steps": 2},
                "forgetting": {"task": "sql_demo", "examples": 2, "in_domain": True},
            }
        )
    )
    texts = sample(load_config(path).forgetting)
    assert len(texts) == 2 and texts[0].startswith("Table employees(") and "SELECT" in texts[0]


def test_the_base_models_loss_is_measured_once_per_output_folder(tmp_path, copy_task, monkeypatch):
    import peftlab.measure.forgetting as forgetting_module

    passes = []
    real = forgetting_module.lm_loss
    monkeypatch.setattr(forgetting_module, "lm_loss", lambda *a, **k: passes.append(k.get("label")) or real(*a, **k))
    first = run(tmp_path, copy_task, "a", {"name": "lora", "rank": 4}, steps=2)
    second = run(tmp_path, copy_task, "b", {"name": "ia3"}, steps=2)
    assert passes.count("forgetting: base model") == 1 and passes.count("forgetting: trained model") == 2
    assert first["loss_before"] == second["loss_before"]


def config_file(tmp_path, task, forgetting: dict) -> object:
    path = tmp_path / "same.yaml"
    path.write_text(
        yaml.safe_dump(
            {"model": {"name": "tiny-llama"}, "task": task, "train": {"max_steps": 2}, "forgetting": forgetting}
        )
    )
    return path


def test_forgetting_on_the_trained_task_is_refused_unless_said_in_domain(tmp_path, copy_task):
    path = config_file(tmp_path, copy_task, {"task": copy_task, "split": "test"})
    with pytest.raises(
        PeftlabError,
        match=r"same\.yaml: forgetting\.task is the trained task \('copy'.*"
        r"forgetting\.in_domain: true",
    ):
        load_config(path)
    # a packaged task named by name alone is the same task as the run's
    with pytest.raises(PeftlabError, match=r"forgetting\.task is the trained task \('sql_demo'"):
        load_config(config_file(tmp_path, {"name": "sql_demo"}, {"task": "sql_demo"}))
    assert load_config(config_file(tmp_path, copy_task, {"task": copy_task, "in_domain": True})).forgetting.in_domain


def test_another_task_or_other_data_under_the_same_name_is_not_in_domain(tmp_path, copy_task):
    other = {**copy_task, "data_files": {**copy_task["data_files"], "test": str(tmp_path / "validation.jsonl")}}
    assert load_config(config_file(tmp_path, copy_task, {"task": other})).forgetting.task.name == "copy"
    assert load_config(config_file(tmp_path, copy_task, {"task": "sql_demo"})).forgetting.task.name == "sql_demo"


def test_a_comparison_measuring_forgetting_on_its_own_task_is_refused_before_writing(tmp_path, copy_task):
    from peftlab.comparison.compare import load_compare

    experiment = {
        "name": "cmp",
        "output_dir": str(tmp_path / "out"),
        "model": {"name": "tiny-llama"},
        "task": copy_task,
        "budget": {"steps": 2},
        "methods": [{"name": "none"}, {"name": "lora"}],
        "forgetting": {"task": copy_task, "examples": 3},
    }
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(experiment))
    with pytest.raises(PeftlabError, match=r"cmp\.yaml: forgetting\.task is the trained task \('copy'"):
        load_compare(path)
    assert not (tmp_path / "out").exists()
    path.write_text(yaml.safe_dump({**experiment, "forgetting": {**experiment["forgetting"], "in_domain": True}}))
    assert load_compare(path).forgetting["in_domain"] is True
