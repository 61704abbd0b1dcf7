"""last_layers (Lee et al., 2019): only the top k blocks, the final norm and optionally the head train."""

import pytest
import torch
from safetensors.torch import load_file

from peftlab.errors import PeftlabError
from peftlab.methods import count_parameters, get_method
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS
from tests.methods.harness import changed_parameters, logits_unchanged_by_apply, save_load_max_diff, setup, train_steps

# Parameter-name prefixes of the last block and the final norm, read off the model layouts.
LAST_BLOCK = {"tiny-t5": "decoder.block.1.", "tiny-gpt-neo": "transformer.h.1.", "tiny-llama": "model.layers.1."}
FINAL_NORM = {"tiny-t5": "decoder.final_layer_norm.", "tiny-gpt-neo": "transformer.ln_f.", "tiny-llama": "model.norm."}


def names_under(model, *prefixes) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.startswith(prefixes)}


@pytest.mark.parametrize("arch", ARCHS)
def test_one_step_changes_only_the_last_block_norm_and_head(arch):
    bb, _, _ = setup(arch, "last_layers", num_layers=1, train_head=True)
    expected = names_under(bb.model, LAST_BLOCK[arch], FINAL_NORM[arch]) | {"lm_head.weight"}
    assert changed_parameters(bb, 1e-3) == expected


def test_t5_include_encoder_trains_the_last_encoder_block_too():
    bb, _, _ = setup("tiny-t5", "last_layers", num_layers=1, include_encoder=True)
    expected = names_under(
        bb.model, "decoder.block.1.", "decoder.final_layer_norm.", "encoder.block.1.", "encoder.final_layer_norm."
    )
    assert changed_parameters(bb, 1e-3) == expected


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_halves_on_a_fixed_batch(arch):
    bb, _, _ = setup(arch, "last_layers", num_layers=1)
    first, last = train_steps(bb, 50, 3e-3)  # measured ratio 0.05-0.11
    assert last < first / 2, (first, last)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_then_load_onto_fresh_base_reproduces_logits(arch, tmp_path):
    assert save_load_max_diff(arch, "last_layers", tmp_path, lr=1e-3, num_layers=1, train_head=True) <= 1e-5
    # Only the trained tensors are stored: block 1, the final norm and the (untied) head.
    saved = set(load_file(str(tmp_path / "adapter" / "last_layers.safetensors")))
    base, _ = tiny_model(arch)
    assert saved == names_under(base, LAST_BLOCK[arch], FINAL_NORM[arch]) | {"lm_head.weight"}


def block_count(arch: str, c, index: int, encoder: bool = False) -> int:
    """Parameters of one transformer block, from the config's dimensions."""
    if arch == "tiny-llama":
        hd = c.head_dim
        attention = c.hidden_size * hd * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)  # q, o, k, v
        return attention + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size  # gate/up/down, 2 RMSNorms
    if arch == "tiny-gpt-neo":
        h, i = c.hidden_size, c.intermediate_size
        return 4 * h * h + h + (h * i + i) + (i * h + h) + 2 * 2 * h  # q/k/v/out(+bias), c_fc, c_proj, ln_1/ln_2
    d, inner = c.d_model, c.num_heads * c.d_kv
    attentions = 1 if encoder else 2  # encoder: self; decoder: self + cross (q, k, v, o each)
    ff = 3 * d * c.d_ff  # gated-gelu: wi_0, wi_1, wo
    bias = c.relative_attention_num_buckets * c.num_heads if index == 0 else 0  # only block 0 holds it
    return attentions * 4 * d * inner + ff + (attentions + 1) * d + bias


def final_norm_count(arch: str, c) -> int:
    return 2 * c.hidden_size if arch == "tiny-gpt-neo" else c.hidden_size  # LayerNorm has a bias, RMSNorm not


@pytest.mark.parametrize("arch", ARCHS)
def test_trainable_count_is_the_blocks_norm_and_head(arch):
    base, _ = tiny_model(arch)
    c = base.config
    layers = getattr(c, "num_decoder_layers", None) or c.num_hidden_layers  # T5: the decoder's blocks
    expected = sum(block_count(arch, c, i) for i in range(layers)) + final_norm_count(arch, c)
    bb, _, _ = setup(arch, "last_layers", num_layers=2)
    assert count_parameters(bb.model)[0] == expected
    bb, _, _ = setup(arch, "last_layers", num_layers=1, train_head=True)
    head = c.vocab_size * c.hidden_size
    assert count_parameters(bb.model)[0] == block_count(arch, c, 1) + final_norm_count(arch, c) + head


def test_t5_count_with_encoder():
    base, _ = tiny_model("tiny-t5")
    c = base.config
    expected = block_count("tiny-t5", c, 1) + block_count("tiny-t5", c, 1, encoder=True) + 2 * c.d_model
    bb, _, _ = setup("tiny-t5", "last_layers", num_layers=1, include_encoder=True)
    assert count_parameters(bb.model)[0] == expected


def test_tied_head_is_untied_so_input_embeddings_stay_frozen():
    base, _ = tiny_model("tiny-llama")
    assert base.lm_head.weight is base.model.embed_tokens.weight  # tiny-llama ties them, like SmolLM2
    assert logits_unchanged_by_apply("tiny-llama", "last_layers", num_layers=0, train_head=True)
    bb, _, _ = setup("tiny-llama", "last_layers", num_layers=0, train_head=True, train_final_norm=False)
    embeddings = bb.model.model.embed_tokens.weight.detach().clone()
    head = bb.model.lm_head.weight.detach().clone()
    assert changed_parameters(bb, 1e-3) == {"lm_head.weight"}
    assert torch.equal(bb.model.model.embed_tokens.weight, embeddings)
    assert not torch.equal(bb.model.lm_head.weight, head)


@pytest.mark.parametrize(
    "options,words",
    [
        ({"num_layers": 3}, ["method.num_layers", "0..2"]),
        ({"num_layers": 0, "train_final_norm": False}, ["nothing would train"]),
    ],
)
def test_impossible_options_are_errors(options, words):
    method = get_method("last_layers")
    model, _ = tiny_model("tiny-llama")
    with pytest.raises(PeftlabError) as e:
        method.apply(model, method.config_cls(**options))
    assert all(w in str(e.value) for w in words), str(e.value)
    assert all(p.requires_grad for p in model.parameters())  # an error leaves the model untouched


def test_include_encoder_on_a_decoder_only_model_is_an_error():
    method = get_method("last_layers")
    model, _ = tiny_model("tiny-gpt-neo")
    with pytest.raises(PeftlabError, match="method.include_encoder"):
        method.apply(model, method.config_cls(include_encoder=True))
