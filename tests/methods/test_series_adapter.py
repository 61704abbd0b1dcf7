"""Series adapters (Houlsby et al., 2019; Pfeiffer et al., 2021) on tiny T5, GPT-Neo and Llama models."""

import json

import pytest
import torch

from peftlab.config import MethodConfig
from peftlab.errors import PeftlabError
from peftlab.methods import count_parameters, get_method, method_options
from peftlab.methods.bottleneck import ACTIVATIONS
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS, fixed_batch
from tests.methods.harness import (
    changed_parameters,
    logits,
    logits_unchanged_by_apply,
    save_load_max_diff,
    setup,
    train_steps,
)


def blocks_and_hidden(arch: str) -> tuple[int, int]:
    c = tiny_model(arch)[0].config
    if arch == "tiny-t5":  # encoder and decoder blocks each have one FFN and one self-attention
        return c.num_layers + c.num_decoder_layers, c.d_model
    return (c.num_layers if arch == "tiny-gpt-neo" else c.num_hidden_layers), c.hidden_size


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("placement,per_block", [("houlsby", 2), ("pfeiffer", 1)])
def test_trainable_count_matches_the_papers_placement(arch, placement, per_block):
    bb, _, _ = setup(arch, "series_adapter", placement=placement, reduction_factor=4)
    blocks, hidden = blocks_and_hidden(arch)
    b = hidden // 4
    per_adapter = hidden * b + b + b * hidden + hidden  # Down and Up, with biases
    assert count_parameters(bb.model)[0] == per_adapter * per_block * blocks


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer"])
def test_starts_at_the_base_model(arch, placement):
    assert logits_unchanged_by_apply(arch, "series_adapter", placement=placement)


def test_without_the_residual_the_sublayer_output_is_replaced():
    # An ablation: the adapter's own skip is off, so even the untrained adapter (output 0) changes the model.
    assert not logits_unchanged_by_apply("tiny-llama", "series_adapter", residual=False)


@pytest.mark.parametrize("non_linearity", ["relu", "silu"])
def test_the_adapter_runs_on_the_sublayers_output(non_linearity):
    """A sublayer's adapted output equals h + scaling * Up(f(Down(h))) with h its unadapted output."""
    bb, _, _ = setup("tiny-llama", "series_adapter", non_linearity=non_linearity, scaling=0.5)
    mlp = bb.model.model.layers[0].mlp
    torch.nn.init.normal_(mlp.series_adapter.up.weight)  # a non-zero adapter
    x = torch.randn(2, 3, bb.model.config.hidden_size)
    with torch.no_grad():
        adapted = mlp(x)
        h = mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x))  # LlamaMLP, without the hook
        a = mlp.series_adapter
        expected = h + 0.5 * a.up(ACTIVATIONS[non_linearity](a.down(h)))
    assert torch.allclose(adapted, expected, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_houlsby_trains_only_its_adapters_after_attention_and_ffn(arch):
    bb, _, _ = setup(arch, "series_adapter", placement="houlsby")
    base_names = {n for n, _ in tiny_model(arch)[0].named_parameters()}
    names = {n for n, _ in bb.model.named_parameters()}
    assert base_names <= names  # adapters are children of the sublayers: base names unchanged
    changed = changed_parameters(bb, 1e-2)
    assert changed and all(".series_adapter." in n for n in changed), sorted(changed)[:5]
    after_attention = (".self_attn.series_adapter.", ".attn.series_adapter.", ".SelfAttention.series_adapter.")
    attention = {n for n in changed if any(s in n for s in after_attention)}
    assert attention and attention != changed  # both places moved


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_halves_on_a_fixed_batch(arch):
    bb, _, _ = setup(arch, "series_adapter", placement="houlsby", non_linearity="gelu")
    first, last = train_steps(bb, 50, 3e-2)
    assert last < first / 2, (first, last)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_then_load_onto_fresh_base_reproduces_logits(arch, tmp_path):
    diff = save_load_max_diff(arch, "series_adapter", tmp_path, placement="houlsby", non_linearity="tanh", dropout=0.1)
    assert diff <= 1e-5
    meta = json.loads((tmp_path / "adapter" / "peftlab_method.json").read_text())
    assert meta["method"] == "series_adapter" and meta["options"]["placement"] == "houlsby"
    assert meta["options"]["non_linearity"] == "tanh"


def test_load_with_another_placement_is_a_clear_error(tmp_path):
    bb, method, _ = setup("tiny-gpt-neo", "series_adapter", placement="houlsby")
    method.save(bb.model, tmp_path)
    with pytest.raises(PeftlabError, match="missing .* unexpected"):
        method.load(tiny_model("tiny-gpt-neo")[0], tmp_path, method.config_cls(placement="pfeiffer"))


def test_options_are_validated_and_label_by_placement():
    with pytest.raises(PeftlabError, match="method.placement"):
        method_options(MethodConfig(name="series_adapter", placement="after"))
    with pytest.raises(PeftlabError, match="method.non_linearity"):
        method_options(MethodConfig(name="series_adapter", non_linearity="softmax"))
    method = get_method("series_adapter")
    assert method.label({"name": "series_adapter", "placement": "houlsby"}) == "houlsby"
    assert method.label({"name": "series_adapter"}) == "pfeiffer"


def test_series_and_parallel_adapters_combine_in_a_hybrid():
    bb, _, _ = setup("tiny-llama", "hybrid", methods=[{"name": "series_adapter"}, {"name": "parallel_adapter"}])
    mlp = bb.model.model.layers[0].mlp
    assert hasattr(mlp, "series_adapter") and hasattr(mlp, "parallel_adapter")
    first, last = train_steps(bb, 20, 1e-2)
    assert last < first
    assert logits(bb.model, fixed_batch(bb)).isfinite().all()
