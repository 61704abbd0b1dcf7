"""QLoRA (Dettmers et al., 2023): LoRA on an NF4-quantized base, on CPU through bitsandbytes."""

import importlib.util

import bitsandbytes as bnb
import pytest
import torch
from torch import nn

from peftlab.config import MethodConfig
from peftlab.errors import PeftlabError
from peftlab.methods import get_method, method_options
from peftlab.models.tiny import tiny_model
from tests.conftest import fixed_batch
from tests.methods.harness import logits, setup, train_steps


def weight_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-t5"])
def test_the_base_is_nf4_but_the_head_and_kept_layers_are_not(arch):
    bb, _, _ = setup(arch, "qlora", rank=4)
    quantized = [n for n, m in bb.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(
        m.weight.quant_state.quant_type == "nf4" for m in bb.model.modules() if isinstance(m, bnb.nn.Linear4bit)
    )
    assert not any(n.endswith("lm_head") or n.endswith("lm_head.base_layer") for n in quantized)
    if arch == "tiny-t5":  # T5 keeps its FFN output `wo` in full precision (as transformers does)
        assert not any(".wo" in n for n in quantized)
    assert weight_bytes(bb.model) < weight_bytes(setup(arch, "lora", rank=4)[0].model)


def test_the_untrained_model_is_the_quantized_base_close_to_the_full_precision_one():
    q, _, _ = setup("tiny-llama", "qlora", rank=4)
    full, tok = tiny_model("tiny-llama")
    batch = fixed_batch(q)
    quantized, exact = logits(q.model, batch), logits(full, batch)
    diff = (quantized - exact).abs().mean().item()
    # Rounded weights: not identical, but near (random 32-wide layers are NF4's worst case: measured
    # mean |difference| 0.51 against a logit spread of 1.42).
    assert 0 < diff < 0.5 * exact.std().item()


def test_loss_falls_and_only_lora_trains():
    bb, _, _ = setup("tiny-llama", "qlora", rank=8)
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    first, last = train_steps(bb, 30, 1e-2)
    assert last < first / 2, (first, last)
    changed = {n for n, p in bb.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)


def test_without_bitsandbytes_the_error_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    with pytest.raises(PeftlabError, match=r"pip install 'peftlab\[qlora\]'"):
        setup("tiny-llama", "qlora")


def test_qlora_is_refused_inside_a_hybrid_and_cannot_merge():
    with pytest.raises(PeftlabError, match="qlora cannot be a hybrid component"):
        method_options(MethodConfig(name="hybrid", methods=[{"name": "qlora"}, {"name": "prompt_tuning"}]))
    assert not get_method("qlora").mergeable
