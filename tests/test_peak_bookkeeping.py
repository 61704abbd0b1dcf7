"""The training peak holds training only: the best weights kept at a validation live on disk
(checkpoint.keep_best), not in a RAM copy held through the remaining optimizer steps, where on CPU
the peak (the process's resident set) would count them. The restored best weights are unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

from peftlab.methods import trainable_parameters
from peftlab.training import validation
from peftlab.training.train import train
from tests.test_train import make_config

MB = 10**6

# One training run in a fresh process, so that its resident memory starts clean; "no-keeping" runs
# the same validations but keeps none as the best (the baseline without bookkeeping).
RUNNER = """
import sys
from peftlab.training import train
from peftlab.config import load_config
if sys.argv[2] == "no-keeping":
    train.selectable = lambda loop, state: False
train.train(load_config(sys.argv[1]))
"""


def wide_llama(folder) -> int:
    """A local Llama of ~25M fp32 parameters (~100 MB: one copy of its weights stands well above the
    noise of a sampled RSS peak); returns its size in bytes."""
    cfg = LlamaConfig(
        vocab_size=384,
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    ByT5Tokenizer().save_pretrained(folder)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def training_peak(tmp_path, copy_task, model_dir, mode: str) -> int:
    cfg = {
        "name": mode,
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": str(model_dir)},
        "method": {"name": "full"},
        "task": copy_task,
        # Validations at steps 3, 6 and 9 (and the end): the first kept one is held through 9 steps.
        "train": {"max_steps": 12, "batch_size": 4, "lr": 1e-4, "eval_every": 3, "checkpoint": False},
        "eval": {"batch_size": 4, "validate_untrained": False, "inference_cost": False},
    }
    path = tmp_path / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", RUNNER, str(path), mode], check=True, env=env, capture_output=True)
    summary = json.loads((tmp_path / "runs" / mode / "summary.json").read_text())
    assert summary["method"] == "full" and summary["steps"] == 12
    assert (summary["best_step"] > 0) == (mode == "keeping")
    return summary["peak_memory_bytes"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU peak (resident set) is what a RAM copy inflated")
def test_keeping_the_best_weights_adds_nothing_to_the_training_peak(tmp_path, copy_task):
    weights = wide_llama(tmp_path / "wide-llama")
    keeping = training_peak(tmp_path, copy_task, tmp_path / "wide-llama", "keeping")
    baseline = training_peak(tmp_path, copy_task, tmp_path / "wide-llama", "no-keeping")
    # Tolerance: a quarter of one weight copy (~25 MB). A RAM copy of the best weights adds a whole
    # copy (~100 MB) to every step after the first kept validation; the sampled RSS peak of two
    # identical fresh processes of this size differs by a few MB.
    assert abs(keeping - baseline) < weights / 4, (keeping / MB, baseline / MB, weights / MB)


# Scripted validation scores by step: the best is step 6, neither the first validation nor the last.
SCORES = {3: 0.0, 6: 1.0, 9: 0.5, 12: 0.5}


@pytest.fixture
def scripted(monkeypatch):
    """Validation scores from SCORES; the trainable weights each validation saw, by step."""
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def score(backbone, model, task, examples, label, **kw):
        step = int(label.rsplit(" ", 1)[1])
        seen[step] = {n: p.detach().clone() for n, p in trainable_parameters(model).items()}
        return {"exact_match": SCORES[step], "seconds": 0.0}, [""] * len(examples)

    monkeypatch.setattr(validation, "generate_and_score", score)
    return seen


def restored_weights(monkeypatch) -> dict:
    """Wraps train.py's restore_best: the weights the test is scored with."""
    from peftlab.training import train as train_module

    got = {}

    def restore(core, state, task, run_dir):
        validation.restore_best(core, state, task, run_dir)
        got.update({n: p.detach().clone() for n, p in trainable_parameters(core).items()})

    monkeypatch.setattr(train_module, "restore_best", restore)
    return got


def full_config(tmp_path, copy_task, name):
    cfg = make_config(tmp_path, copy_task, "tiny-gpt-neo", {"name": "full"}, lr=3e-3, eval_every=3)
    return cfg.model_copy(update={"name": name, "eval": cfg.eval.model_copy(update={"validate_untrained": False})})


def test_the_best_validation_s_weights_are_restored_from_disk(tmp_path, copy_task, scripted, monkeypatch):
    got = restored_weights(monkeypatch)
    run_dir = train(full_config(tmp_path, copy_task, "best"))
    assert json.loads((run_dir / "summary.json").read_text())["best_step"] == 6
    assert sorted(scripted) == [3, 6, 9, 12] and got.keys() == scripted[6].keys()
    assert all(torch.equal(got[n], scripted[6][n]) for n in got)
    assert not any(torch.equal(got[n], scripted[12][n]) for n in got if n.endswith("weight"))  # it trained on
    assert not (run_dir / "best.safetensors").exists()  # the adapter holds them now


def test_a_run_resumed_before_a_later_best_restores_what_the_uninterrupted_one_does(
    tmp_path, copy_task, scripted, monkeypatch
):
    """Killed while checkpointing step 9: the resumed run puts back the best weights its checkpoint
    of step 6 holds (the checkpoint carries a copy of the file), redoes steps 7-9 and restores the
    same weights as a run never stopped."""
    from peftlab.training import checkpoint

    save = checkpoint.save

    def crash_at_9(run_dir, trainable, optimizer, best, info, *rest):
        if info["step"] == 9:
            raise KeyboardInterrupt("killed while checkpointing step 9")
        save(run_dir, trainable, optimizer, best, info, *rest)

    cfg = full_config(tmp_path, copy_task, "resumed")
    monkeypatch.setattr(checkpoint, "save", crash_at_9)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert load_file(cfg.run_dir() / "checkpoint" / "best.safetensors").keys() == scripted[6].keys()
    monkeypatch.setattr(checkpoint, "save", save)
    resumed = restored_weights(monkeypatch)
    train(cfg, resume=True)
    straight = restored_weights(monkeypatch)
    train(full_config(tmp_path, copy_task, "straight"))
    assert resumed.keys() == straight.keys() and all(torch.equal(resumed[n], straight[n]) for n in resumed)
