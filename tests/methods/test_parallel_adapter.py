"""Parallel adapter (He et al., 2022) on tiny T5, GPT-Neo and Llama models."""

import json

import pytest
import torch
from safetensors.torch import load_file

from peftlab.errors import PeftlabError
from peftlab.methods import count_parameters, get_method
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS
from tests.methods.harness import changed_parameters, logits_unchanged_by_apply, save_load_max_diff, setup, train_steps


def expected_trainable(arch: str, reduction_factor: int, target: str) -> int:
    """Per adapted sublayer: Down (hidden x b + b bias) + Up (b x hidden + hidden bias)."""
    c = tiny_model(arch)[0].config
    if arch == "tiny-t5":  # encoder and decoder blocks each have one FFN and one self-attention
        hidden, blocks = c.d_model, c.num_layers + c.num_decoder_layers
    elif arch == "tiny-gpt-neo":
        hidden, blocks = c.hidden_size, c.num_layers
    else:
        hidden, blocks = c.hidden_size, c.num_hidden_layers
    b = hidden // reduction_factor
    per_sublayer = 2 * hidden * b + b + hidden
    return per_sublayer * blocks * (2 if target == "both" else 1)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target", ["ffn", "both"])
def test_starts_at_the_base_model(arch, target):
    assert logits_unchanged_by_apply(arch, "parallel_adapter", target=target)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target,rf", [("ffn", 16), ("attention", 4), ("both", 8)])
def test_trainable_count_matches_the_formula(arch, target, rf):
    bb, _, _ = setup(arch, "parallel_adapter", target=target, reduction_factor=rf)
    assert count_parameters(bb.model)[0] == expected_trainable(arch, rf, target)


@pytest.mark.parametrize("arch", ARCHS)
def test_one_step_changes_only_the_adapters(arch):
    bb, _, _ = setup(arch, "parallel_adapter", target="both")
    names = {n for n, _ in bb.model.named_parameters()}
    base_names = {n for n, _ in tiny_model(arch)[0].named_parameters()}
    assert base_names <= names  # adapters are children of the sublayers: base names unchanged
    changed = changed_parameters(bb, 1e-2)
    assert changed and all(".parallel_adapter." in n for n in changed), sorted(changed)[:5]
    # Up starts at zero, so the first step moves Up (Down's gradient is Up^T ... = 0): every Up moved.
    assert {n for n in names if ".parallel_adapter.up." in n} <= changed


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target", ["ffn", "both"])
def test_loss_halves_on_a_fixed_batch(arch, target):
    bb, _, _ = setup(arch, "parallel_adapter", target=target)
    first, last = train_steps(bb, 50, 3e-2)
    assert last < first / 2, (first, last)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_then_load_onto_fresh_base_reproduces_logits(arch, tmp_path):
    assert save_load_max_diff(arch, "parallel_adapter", tmp_path, lr=1e-2, target="both", dropout=0.1) <= 1e-5
    meta = json.loads((tmp_path / "adapter" / "peftlab_method.json").read_text())
    assert meta["method"] == "parallel_adapter" and meta["options"]["target"] == "both"
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "parallel_adapter.safetensors",
        "peftlab_method.json",
    ]


def test_a_loaded_adapter_saves_the_same_tensors_again(tmp_path):
    bb, method, cfg = setup("tiny-gpt-neo", "parallel_adapter", target="both")
    train_steps(bb, 2, 1e-2)
    method.save(bb.model, tmp_path / "a")
    loaded = method.load(tiny_model("tiny-gpt-neo")[0], tmp_path / "a", cfg)  # frozen for inference
    method.save(loaded, tmp_path / "b")
    a, b = (load_file(str(tmp_path / d / "parallel_adapter.safetensors")) for d in "ab")
    assert a.keys() == b.keys() and len(a) == 16 and all(torch.equal(a[k], b[k]) for k in a)


def test_load_with_other_options_is_a_clear_error(tmp_path):
    bb, method, _ = setup("tiny-llama", "parallel_adapter", target="both")
    method.save(bb.model, tmp_path)
    with pytest.raises(PeftlabError, match="missing .* unexpected"):
        method.load(tiny_model("tiny-llama")[0], tmp_path, method.config_cls(target="ffn"))
    with pytest.raises(PeftlabError, match="has shape"):
        method.load(tiny_model("tiny-llama")[0], tmp_path, method.config_cls(target="both", reduction_factor=8))


def test_options_are_validated():
    from peftlab.config import MethodConfig
    from peftlab.methods import method_options

    with pytest.raises(PeftlabError, match="method.target"):
        method_options(MethodConfig(name="parallel_adapter", target="mlp"))
    assert get_method("parallel_adapter").zero_init
