"""(IA)^3 (Liu et al., 2022) on tiny T5, GPT-Neo and Llama models."""

import pytest
import torch
from pydantic import ValidationError

from peftlab.methods import count_parameters, get_method
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

# peft 0.21's defaults per architecture, written out: (targets, feed-forward targets).
DEFAULTS = {
    "tiny-t5": ({"k", "v", "wo"}, {"wo"}),
    "tiny-gpt-neo": ({"q_proj", "v_proj", "c_proj"}, {"c_proj"}),
    "tiny-llama": ({"k_proj", "v_proj", "down_proj"}, {"down_proj"}),
}


@pytest.mark.parametrize("arch", ARCHS)
def test_one_step_changes_only_ia3_vectors(arch):
    bb, _, _ = setup(arch, "ia3")
    expected = {n for n, _ in bb.model.named_parameters() if ".ia3_l." in n}
    assert expected and changed_parameters(bb, 1e-2) == expected


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_halves_on_a_fixed_batch(arch):
    bb, _, _ = setup(arch, "ia3")
    # Rescaling vectors start at 1 and need large steps to move far in 50 steps on a tiny model:
    # measured ratio at lr 0.1: T5 0.15, GPT-Neo 0.28, Llama 0.32 (at 3e-2: 0.32 / 0.40 / 0.41).
    first, last = train_steps(bb, 50, 1e-1)
    assert last < first / 2, (first, last)


@pytest.mark.parametrize("arch", ARCHS)
def test_starts_at_the_base_model(arch):
    assert logits_unchanged_by_apply(arch, "ia3")


@pytest.mark.parametrize("arch", ARCHS)
def test_trainable_count_is_out_features_or_ff_in_features(arch):
    targets, feedforward = DEFAULTS[arch]
    base, _ = tiny_model(arch)
    # l_k, l_v rescale a projection's output (out_features); l_ff rescales the down projection's input.
    expected = sum(
        m.in_features if n.split(".")[-1] in feedforward else m.out_features
        for n, m in base.named_modules()
        if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in targets
    )
    bb, _, _ = setup(arch, "ia3")
    assert count_parameters(bb.model)[0] == expected


def test_explicit_targets_follow_the_paper_on_gpt_neo():
    # The paper rescales keys, not queries: k_proj instead of peft's default q_proj.
    bb, _, _ = setup(
        "tiny-gpt-neo", "ia3", target_modules=["k_proj", "v_proj", "c_proj"], feedforward_modules=["c_proj"]
    )
    names = {n for n, p in bb.model.named_parameters() if p.requires_grad}
    assert any("k_proj.ia3_l" in n for n in names) and not any("q_proj" in n for n in names)
    c = bb.model.config
    assert count_parameters(bb.model)[0] == c.num_layers * (2 * c.hidden_size + c.intermediate_size)


def test_feedforward_outside_targets_is_an_options_error():
    with pytest.raises(ValidationError, match="subset of target_modules"):
        get_method("ia3").config_cls(target_modules=["k", "v"], feedforward_modules=["wo"])


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_reproduces_logits_also_with_plain_peft(arch, tmp_path):
    assert save_load_max_diff(arch, "ia3", tmp_path / "ours", lr=1e-2) <= 1e-5
    assert plain_peft_max_diff(arch, "ia3", tmp_path, lr=1e-2) <= 1e-5
