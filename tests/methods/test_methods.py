"""Full fine-tuning and LoRA on tiny T5, GPT-Neo and Llama models."""

import pytest
import torch

from peftlab.methods import count_parameters
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS
from tests.methods.harness import (
    changed_parameters,
    logits_unchanged_by_apply,
    plain_peft_max_diff,
    save_load_max_diff,
    setup,
    train_steps,
)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method_name,lr", [("full", 3e-3), ("lora", 1e-2)])
def test_loss_halves_on_a_fixed_batch(arch, method_name, lr):
    bb, _, _ = setup(arch, method_name, **({"dropout": 0.0} if method_name == "lora" else {}))
    first, last = train_steps(bb, 50, lr)
    assert last < first / 2, (first, last)


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_changes_only_lora_parameters(arch):
    bb, _, _ = setup(arch, "lora", dropout=0.0)
    names = {n for n, _ in bb.model.named_parameters()}
    changed = changed_parameters(bb, 1e-2)
    assert changed and all("lora_" in n for n in changed), sorted(changed)[:5]
    # lora_B starts at zero, so on the first step only lora_B gets a gradient (dL/dA = B^T ... = 0):
    # every lora_B must have moved.
    assert {n for n in names if "lora_B" in n} <= changed


@pytest.mark.parametrize("arch", ARCHS)
def test_full_changes_every_parameter(arch):
    bb, _, _ = setup(arch, "full")
    trainable, total = count_parameters(bb.model)
    assert trainable == total
    changed = changed_parameters(bb, 1e-3)
    assert changed == {n for n, _ in bb.model.named_parameters()}


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_starts_at_the_base_model_and_counts_parameters(arch):
    assert logits_unchanged_by_apply(arch, "lora", rank=4)
    base, _ = tiny_model(arch)
    # trainable = sum over adapted Linear layers (all but the output head) of rank * (in + out)
    expected = sum(
        4 * (m.in_features + m.out_features)
        for n, m in base.named_modules()
        if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")
    )
    bb, _, _ = setup(arch, "lora", rank=4)
    assert count_parameters(bb.model)[0] == expected


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method_name,lr", [("lora", 1e-2), ("full", 1e-3)])
def test_save_then_load_onto_fresh_base_reproduces_logits(arch, method_name, lr, tmp_path):
    assert save_load_max_diff(arch, method_name, tmp_path, lr=lr) <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_adapter_loads_with_plain_peft(arch, tmp_path):
    assert plain_peft_max_diff(arch, "lora", tmp_path, lr=1e-2) <= 1e-5
