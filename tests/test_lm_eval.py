"""lm-evaluation-harness as a measure (measure/general.py, report/general.py): a local multiple-choice
task scored offline, compare's general.lm_eval section, and its refusals before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from peftlab.comparison.compare import compare, load_compare
from peftlab.errors import PeftlabError
from peftlab.measure.general import LmEvalConfig, score
from peftlab.models.backbone import Backbone
from peftlab.models.tiny import tiny_model

TASKS = Path(__file__).parent / "data" / "lm_eval"
ITEMS = [json.loads(line) for line in (TASKS / "peftlab_colors.jsonl").read_text().splitlines()]
COLUMN = "lm_eval peftlab_colors acc"
TEXT_COLUMN = "lm_eval peftlab_colors_text bits_per_byte"


@torch.no_grad()
def hand_accuracy(model, tok, items: list[dict]) -> float:
    """The task by hand: each choice's summed log-probability of ' <choice>' after the question's
    prompt, from the logits of one forward pass; the item counts when its answer has the largest."""
    right = 0
    for item in items:
        context = tok(f"Question: {item['question']}\nAnswer:", add_special_tokens=False)["input_ids"]
        logliks = []
        for choice in item["choices"]:
            cont = tok(f" {choice}", add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([context + cont])).logits[0]
            logp = torch.log_softmax(logits[len(context) - 1 : -1].float(), dim=-1)
            logliks.append(logp[torch.arange(len(cont)), torch.tensor(cont)].sum().item())
        right += max(range(len(logliks)), key=logliks.__getitem__) == item["answer"]
    return right / len(items)


@pytest.mark.parametrize(("arch", "limit"), [("tiny-llama", None), ("tiny-gpt-neo", 7)])
def test_the_local_task_scores_the_accuracy_computed_by_hand(arch, limit):
    model, tok = tiny_model(arch)
    backbone = Backbone(model=model, tokenizer=tok, source=arch)
    cfg = LmEvalConfig(tasks=["peftlab_colors"], limit=limit, include_path=str(TASKS), batch_size=4)
    got = score(backbone, cfg)
    items = ITEMS[:limit] if limit else ITEMS
    assert got["n"] == {"peftlab_colors": len(items)}
    assert got["scores"]["peftlab_colors"]["acc"] == pytest.approx(hand_accuracy(model, tok, items), abs=1e-9)
    assert got["settings"]["tasks"] == ["peftlab_colors"] and got["settings"]["limit"] == limit


def experiment(tmp_path: Path, copy_task: dict, tasks: list[str], methods: list[dict] | None = None) -> Path:
    exp = {
        "name": "cmp",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "task": copy_task,
        "budget": {"steps": 4},
        "evals": 1,
        "seeds": [0],
        "trackers": [],
        "train": {"batch_size": 4, "lr": 1e-2},
        "eval": {"batch_size": 4},
        "lr_search": "off",
        "general": {"lm_eval": {"tasks": tasks, "limit": 10, "include_path": str(TASKS), "batch_size": 4}},
        "methods": methods or [{"name": "lora", "rank": 4, "dropout": 0.0}, {"name": "full", "train": {"lr": 0.05}}],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def test_a_comparison_scores_every_run_and_the_base_and_shows_the_change(tmp_path, copy_task):
    tasks = ["peftlab_colors", "peftlab_colors_text"]  # accuracy, and bits per byte: moves with any training
    folder = compare(experiment(tmp_path, copy_task, tasks))
    base = json.loads((folder / "lm_eval_base.json").read_text())
    assert base["model"] == "tiny-llama" and base["n"] == {"peftlab_colors": 10, "peftlab_colors_text": 10}
    model, tok = tiny_model("tiny-llama")  # the base, as compare loaded it: same seed, same weights
    assert base["scores"]["peftlab_colors"]["acc"] == pytest.approx(hand_accuracy(model, tok, ITEMS[:10]))
    rows = {r["label"]: r for r in json.loads((folder / "leaderboard.json").read_text())}
    assert set(rows) == {"lora", "full"}
    for label, row in rows.items():
        run = json.loads((folder / f"{label}-s0" / "lm_eval.json").read_text())
        acc = run["scores"]["peftlab_colors"]["acc"]
        assert row[COLUMN] == pytest.approx(acc)
        assert row[f"{COLUMN} Δ base"] == pytest.approx(acc - base["scores"]["peftlab_colors"]["acc"])
        bpb = run["scores"]["peftlab_colors_text"]["bits_per_byte"]
        change = row[f"{TEXT_COLUMN} Δ base"]
        assert change == pytest.approx(bpb - base["scores"]["peftlab_colors_text"]["bits_per_byte"])
        assert abs(change) > 1e-4  # the adapted model was scored, not the base
    board = (folder / "leaderboard.md").read_text()
    assert f"| {COLUMN} | Δ base | {TEXT_COLUMN} | Δ base |" in board
    assert (folder / "plots" / "copy-lm_eval-delta.png").stat().st_size > 1000  # the bar chart, per task copy
    assert COLUMN in (folder / "report.html").read_text()
    # Rerun: the stored results have the same settings and are kept, not recomputed.
    stamp = (folder / "lora-s0" / "lm_eval.json").stat().st_mtime_ns
    compare(experiment(tmp_path, copy_task, tasks))
    assert (folder / "lora-s0" / "lm_eval.json").stat().st_mtime_ns == stamp


def test_an_unknown_task_is_refused_before_any_run_starts_with_close_names(tmp_path, copy_task):
    path = experiment(tmp_path, copy_task, ["peftlab_colors", "peftlab_colours"])
    with pytest.raises(PeftlabError, match=r"'peftlab_colours' \(close: peftlab_colors") as e:
        compare(path)
    assert "general.lm_eval.tasks" in str(e.value) and "'peftlab_colors'" not in str(e.value)
    assert not (tmp_path / "runs").exists()  # nothing written, nothing trained
    with pytest.raises(PeftlabError, match="peftlab_colours"):
        load_compare(path)


def test_a_method_lm_eval_would_misread_is_refused_before_training(tmp_path, copy_task):
    methods = [{"name": "lora"}, {"name": "prompt_tuning", "num_virtual_tokens": 4}]
    with pytest.raises(PeftlabError, match="cannot score prompt_tuning.*virtual tokens"):
        compare(experiment(tmp_path, copy_task, ["peftlab_colors"], methods))
    assert not list((tmp_path / "runs").glob("**/summary.json"))


def test_a_missing_include_path_is_named(tmp_path, copy_task):
    path = experiment(tmp_path, copy_task, ["peftlab_colors"])
    exp = yaml.safe_load(path.read_text())
    exp["general"]["lm_eval"]["include_path"] = str(tmp_path / "nowhere")
    path.write_text(yaml.safe_dump(exp))
    with pytest.raises(PeftlabError, match="include_path: .*nowhere is not a folder"):
        load_compare(path)


def test_a_run_trained_in_bf16_is_scored_as_it_trained(tmp_path, copy_task):
    """load_run holds the frozen linears in bf16 under bf16 autocast; lm-eval's own autocast must get that
    dtype (left off, an fp32 pass would meet bf16 weights and fail)."""
    from peftlab.config import load_config
    from peftlab.evaluation.evaluate import load_run
    from peftlab.training.train import train

    cfg = {
        "name": "bf16",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 4},
        "task": copy_task,
        "train": {"max_steps": 2, "batch_size": 4, "precision": "bf16"},
        "eval": {"batch_size": 4},
        "trackers": [],
    }
    path = tmp_path / "bf16.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _, backbone = load_run(train(load_config(path)), log=lambda *a: None)
    assert backbone.compute_dtype == torch.bfloat16
    got = score(backbone, LmEvalConfig(tasks=["peftlab_colors_text"], limit=4, include_path=str(TASKS)))
    assert 0 < got["scores"]["peftlab_colors_text"]["bits_per_byte"] < 100
