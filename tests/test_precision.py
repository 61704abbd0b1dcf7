"""train.precision: every method trains, generates and scores under the same numerics, set by peftlab
(one autocast context per forward), not by whichever wrapper (accelerate, peft) a method happens to use."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import peftlab.training.train as train_module
from peftlab.measure.precision import compute_dtype
from peftlab.methods import REGISTRY
from peftlab.tasks.loglik import classify
from peftlab.training.train import train
from tests.methods.harness import misfits, setup
from tests.test_train import make_config

NAMES = list(REGISTRY)


class LinearDtypes:
    """Records the dtype of every nn.Linear output, by whether the module was training (a training
    forward) or not (generation, scoring)."""

    def __init__(self, model: nn.Module):
        self.seen: dict[str, set[torch.dtype]] = {"train": set(), "eval": set()}
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, nn.Linear)]

    def _hook(self, module, args, out):
        self.seen["train" if module.training else "eval"].add(out.dtype)


def record_linear_dtypes(monkeypatch) -> list[LinearDtypes]:
    """A LinearDtypes recorder on the model of every train() call made after this (one per run)."""
    recorders = []
    load_model = train_module.load_model

    def load_and_hook(*args, **kwargs):
        backbone, loss_before = load_model(*args, **kwargs)
        recorders.append(LinearDtypes(backbone.model))
        return backbone, loss_before

    monkeypatch.setattr(train_module, "load_model", load_and_hook)
    return recorders


def test_compute_dtype_auto_is_bf16_on_gpu_and_fp32_on_a_cpu_without_bf16():
    assert compute_dtype("auto", "cuda") is torch.bfloat16
    assert compute_dtype("auto", "cpu") is None
    assert compute_dtype("bf16", "cpu") is torch.bfloat16
    assert compute_dtype("fp32", "cuda") is None


# bf16 for every method; fp32 for a plain, a peft-wrapped and the untrained one (fp32 is the CPU default
# every other test runs in).
@pytest.mark.parametrize(
    ("name", "precision"), [(n, "bf16") for n in NAMES] + [(n, "fp32") for n in ("none", "full", "lora")]
)
def test_training_and_log_likelihood_scoring_run_in_the_configured_dtype(
    tmp_path, copy_task, monkeypatch, name, precision
):
    """Through train() itself (accelerate's prepare included): a classify task is scored by
    log-likelihood, on validation and test."""
    recorders = record_linear_dtypes(monkeypatch)
    words = ["apple", "river", "stone", "cloud", "maple", "tiger", "ocean", "piano"]
    words += ["lemon", "amber", "cedar", "delta", "eagle", "flint", "grape", "honey"]
    task = {**copy_task, "output_type": "classify", "label_words": words}
    train(
        make_config(tmp_path, task, "tiny-gpt-neo", {"name": name}, max_steps=2, eval_every=None, precision=precision)
    )
    expected = torch.bfloat16 if precision == "bf16" else torch.float32
    (seen,) = [r.seen for r in recorders]
    assert seen["eval"] == {expected}
    if REGISTRY[name].trains:
        assert seen["train"] == {expected}


@pytest.mark.parametrize(
    ("arch", "name"),
    # every method on the models it applies to (BitFit needs biases: pinned in test_every_method.py)
    [(a, n) for n in NAMES for a in ("tiny-t5", "tiny-llama") if (a, n) not in misfits(("tiny-t5", "tiny-llama"))],
)
def test_generation_and_scoring_use_the_backbones_compute_dtype(arch, name):
    bb, _, _ = setup(arch, name)
    bb.compute_dtype = torch.bfloat16
    bb.model.eval()
    dtypes = LinearDtypes(bb.model)
    bb.generate(bb.model, ["Repeat: cat", "Repeat: a longer word"], max_new_tokens=3)
    classify(bb, bb.model, ["Repeat: cat"], ["cat", "dog"])
    assert dtypes.seen["eval"] == {torch.bfloat16}
    bb.compute_dtype = None
    dtypes.seen["eval"].clear()
    bb.generate(bb.model, ["Repeat: cat"], max_new_tokens=3)
    assert dtypes.seen["eval"] == {torch.float32}
