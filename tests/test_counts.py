"""What summary.json counts: distinct inputs truncated, and training tokens (prompt + target)."""

import json

import pytest
import torch

from peftlab.models.backbone import Backbone
from peftlab.models.causal import CAUSAL
from peftlab.models.seq2seq import SEQ2SEQ
from peftlab.models.tiny import tiny_model
from peftlab.tasks.base import build_task
from peftlab.training.train import train
from tests.test_train import make_config


def backbone(arch: str) -> Backbone:
    model, tok = tiny_model(arch)
    return Backbone(model=model, tokenizer=tok, source=arch)


# ---- truncated_inputs: distinct inputs, not truncation calls ------------------------------------
def test_a_prompt_truncated_again_counts_once():
    bb = backbone("tiny-llama")
    for _ in range(3):  # e.g. one validation prompt, scored at three validation points
        bb.prompt_ids("x" * 100, max_source_tokens=10)
    bb.prompt_ids("y" * 100, max_source_tokens=10)
    bb.prompt_ids("short", max_source_tokens=10)
    assert bb.truncated == 2


def test_summary_counts_each_truncated_input_once(tmp_path, copy_task):
    """Every copy-task prompt ('Repeat: apple', 13 tokens) is over 8 tokens: 12 train + 2 validation +
    2 test inputs, however many times validation runs."""
    task = {**copy_task, "max_source_tokens": 8}
    run_dir = train(make_config(tmp_path, task, "tiny-gpt-neo", max_steps=4, eval_every=1))
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["truncated_inputs"] == 16


# ---- tokens: prompt + target, for both model kinds ----------------------------------------------
def test_batch_tokens_count_prompt_and_target():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    labels = torch.tensor([[5, 6, -100, -100], [7, -100, -100, -100]])
    # Encoder-decoder: the encoder's real tokens (the prompt) + the decoder's labelled ones (the target).
    assert SEQ2SEQ.batch_tokens({"attention_mask": mask, "labels": labels}) == 7 + 3
    # Decoder-only: prompt and target are one sequence; its real tokens are the mask's ones.
    assert CAUSAL.batch_tokens({"attention_mask": mask, "labels": labels}) == 7


@pytest.mark.parametrize("arch", ["tiny-t5", "tiny-llama"])
def test_a_tokens_budget_counts_prompt_and_target(tmp_path, copy_task, arch):
    """One epoch (12 examples, 3 steps of 4) spends exactly the prompt + target tokens of the train split:
    a tokens budget of that many ends after those 3 steps and tokens_seen equals it."""
    bb = backbone(arch)
    examples = build_task(make_config(tmp_path, copy_task, arch).task).split("train")
    features = [bb.encode(e.prompt, e.target) for e in examples]
    if bb.is_seq2seq:
        total = sum(len(f["input_ids"]) + len(f["labels"]) for f in features)
    else:
        total = sum(len(f["input_ids"]) for f in features)
    cfg = make_config(tmp_path, copy_task, arch, max_steps=None, max_tokens=total, eval_every=None)
    s = json.loads((train(cfg) / "summary.json").read_text())
    assert (s["steps"], s["examples_seen"], s["tokens_seen"]) == (3, 12, total)
