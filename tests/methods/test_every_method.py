"""Checks every registered method passes on every tiny architecture it applies to, with no test file of
its own needed: a method is tested by being registered (tests/methods/toy_method.py shows it).

A method that does not apply to a model (``Method.applies_to``: BitFit needs bias terms) is not run on
it; which (architecture, method) pairs those are is pinned below, reason and all, so that a method which
stops applying somewhere, or a model that loses what a method needs, fails here instead of vanishing."""

from __future__ import annotations

import pytest
import torch

from peftlab import cli
from peftlab.console import console
from peftlab.methods import REGISTRY, count_parameters, trainable_parameters
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS, fixed_batch
from tests.methods.harness import logits, misfits, setup, train_steps

NAMES = list(REGISTRY)
SKIPPED = misfits(ARCHS)
# Every (architecture, method) the tests run: all but the pinned misfits.
FITS = [(arch, name) for arch in ARCHS for name in NAMES if (arch, name) not in SKIPPED]
NO_BIASES = "the model has no bias terms; BitFit needs a model with biases such as GPT-Neo"


def test_exactly_these_pairs_are_skipped_and_why():
    assert SKIPPED == {("tiny-t5", "bitfit"): NO_BIASES, ("tiny-llama", "bitfit"): NO_BIASES}
    assert len(FITS) == len(ARCHS) * len(NAMES) - 2


@pytest.mark.parametrize(("arch", "name"), FITS)
def test_only_the_methods_parameters_train(arch, name):
    bb, method, _ = setup(arch, name)
    trainable = set(trainable_parameters(bb.model))
    if not method.trains:
        assert not trainable
        return
    assert trainable
    if method.markers():  # a method that adds tensors trains exactly those it added
        assert trainable == {n for n, _ in bb.model.named_parameters() if method.adds(n)}
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    train_steps(bb, 2, method.lr(method.config_cls()))
    changed = {n for n, p in bb.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable


@pytest.mark.parametrize(("arch", "name"), FITS)
def test_save_then_load_on_a_fresh_model_reproduces_the_logits(arch, name, tmp_path):
    bb, method, cfg = setup(arch, name)
    if method.trains:
        train_steps(bb, 3, method.lr(cfg))
    batch = fixed_batch(bb)
    expected = logits(bb.model, batch)
    method.save(bb.model, tmp_path / "adapter")
    fresh, _ = tiny_model(arch)
    loaded = method.load(fresh, tmp_path / "adapter", cfg).eval()
    assert (logits(loaded, batch) - expected).abs().max().item() <= 1e-5
    assert count_parameters(loaded)[1] == count_parameters(bb.model)[1]


@pytest.mark.parametrize("name", NAMES)
def test_peftlab_methods_lists_it_with_its_options_and_lr(name):
    with console.capture() as captured:
        assert cli.main(["methods"]) == 0
    out = captured.get()
    assert name in out and REGISTRY[name].paper.split(".")[0] in out


def test_the_toy_method_is_in_the_registry_by_one_register_call():
    method = REGISTRY["norm_scale"]
    assert method.adds("model.layers.0.input_layernorm.norm_scale") and not method.adds("model.norm.weight")


def test_a_hybrid_counts_the_markers_of_a_method_registered_after_import():
    # The toy method is registered by tests/conftest.py, after peftlab.methods was imported.
    hybrid = REGISTRY["hybrid"]
    assert "norm_scale" in hybrid.markers() and hybrid.adds("model.layers.0.input_layernorm.norm_scale")
