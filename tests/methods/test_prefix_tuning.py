"""Prefix tuning (Li & Liang, 2021) on tiny T5, GPT-Neo and Llama models, and where the prefix reaches."""

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from peftlab.methods import count_parameters, get_method
from peftlab.models.backbone import IGNORE
from peftlab.models.tiny import EOS, PAD, VOCAB, tiny_model
from tests.conftest import ARCHS, fixed_batch
from tests.methods.harness import (
    by_hand_text,
    changed_parameters,
    generated_ids,
    greedy_by_hand,
    plain_peft_max_diff,
    save_load_max_diff,
    setup,
    train_steps,
)

PROJECTION = [{}, {"prefix_projection": True}]


@pytest.mark.parametrize("options", PROJECTION)
@pytest.mark.parametrize("arch", ARCHS)
def test_one_step_changes_only_the_prefix_encoder(arch, options):
    bb, _, _ = setup(arch, "prefix_tuning", **options)
    expected = {n for n, _ in bb.model.named_parameters() if n.startswith("prompt_encoder.default.")}
    assert expected and changed_parameters(bb, 1e-2) == expected


@pytest.mark.parametrize("options,lr", [({}, 1e-1), ({"prefix_projection": True}, 3e-2)])
@pytest.mark.parametrize("arch", ARCHS)
def test_loss_halves_on_a_fixed_batch(arch, options, lr):
    # Measured over 5 seeds: direct prefix at 0.1 -> 0.07-0.21x; with projection at 3e-2 -> 0.07-0.38x.
    bb, _, _ = setup(arch, "prefix_tuning", **options)
    first, last = train_steps(bb, 50, lr)
    assert last < first / 2, (first, last)


def kv_shape(arch: str, c) -> tuple[int, int]:
    """(layers that get a prefix, width of one key) from the config."""
    if arch == "tiny-t5":  # the decoder's layers; a key is num_heads * d_kv wide
        return c.num_decoder_layers, c.num_heads * c.d_kv
    if arch == "tiny-llama":  # grouped-query attention: keys have num_key_value_heads heads
        return c.num_hidden_layers, c.num_key_value_heads * c.head_dim
    return c.num_layers, c.hidden_size


@pytest.mark.parametrize("arch", ARCHS)
def test_trainable_count(arch):
    base, _ = tiny_model(arch)
    layers, width = kv_shape(arch, base.config)
    n = 5
    bb, _, _ = setup(arch, "prefix_tuning", num_virtual_tokens=n)
    # One key and one value vector per virtual token and layer. On T5 peft allocates one prefix
    # (decoder-sized), not one per transformer submodule.
    assert count_parameters(bb.model)[0] == n * layers * 2 * width
    bb, _, _ = setup(arch, "prefix_tuning", num_virtual_tokens=n, prefix_projection=True, encoder_hidden_size=12)
    # Embedding (n x width) -> Linear(width, 12) -> tanh -> Linear(12, layers * 2 * width), with biases.
    out = layers * 2 * width
    assert count_parameters(bb.model)[0] == n * width + (width * 12 + 12) + (12 * out + out)


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_is_on_the_target_tokens_only(arch):
    # The prefix lives in the cache, not in the sequence: logits line up with Backbone's labels.
    bb, _, _ = setup(arch, "prefix_tuning", num_virtual_tokens=5)
    batch = fixed_batch(bb)
    with torch.no_grad():
        out = bb.model(**batch)
    labels = batch["labels"]
    scored, targets = (out.logits, labels) if bb.is_seq2seq else (out.logits[:, :-1], labels[:, 1:])
    by_hand = torch.nn.functional.cross_entropy(
        scored.reshape(-1, scored.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )
    assert torch.allclose(out.loss, by_hand, atol=1e-5), (out.loss, by_hand)


def test_t5_prefix_is_sized_from_the_decoder():
    # An asymmetric, wide-head T5 (like t5-3b, where num_heads * d_kv != d_model): sized from
    # num_hidden_layers and d_model as peft does by default, the prefix would not fit the decoder.
    config = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_heads=4,
        num_layers=1,
        num_decoder_layers=3,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )
    torch.manual_seed(0)
    method = get_method("prefix_tuning")
    model = method.apply(T5ForConditionalGeneration(config).eval(), method.config_cls(num_virtual_tokens=4))
    assert count_parameters(model)[0] == 4 * 3 * 2 * (4 * 16)
    loss = model(input_ids=torch.tensor([[5, 6, 7, EOS]]), labels=torch.tensor([[8, 9, EOS]])).loss
    assert torch.isfinite(loss)


@pytest.mark.parametrize("options", PROJECTION)
@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_reproduces_logits_also_with_plain_peft(arch, options, tmp_path):
    assert save_load_max_diff(arch, "prefix_tuning", tmp_path / "ours", lr=1e-2, **options) <= 1e-5
    assert plain_peft_max_diff(arch, "prefix_tuning", tmp_path, lr=1e-2, **options) <= 1e-5


# ---- where the prefix reaches ---------------------------------------------------------------
ATTENTION = {"T5Attention", "GPTNeoSelfAttention", "LlamaAttention"}


def attention_outputs(model, batch, pinned_inputs=None):
    """({attention module: output}, {module: query input}) of one forward pass.

    With pinned_inputs, every attention module gets the query input recorded in another pass, so its
    output can change only through what reaches it directly (the prefix in its keys / values).
    """
    outputs, inputs, handles = {}, {}, []

    def pre(name):
        def hook(module, args, kwargs):
            key = "hidden_states" if "hidden_states" in kwargs else None  # Llama passes it by name
            inputs[name] = kwargs[key] if key else args[0]
            if pinned_inputs is not None:
                if key:
                    kwargs = {**kwargs, key: pinned_inputs[name]}
                else:
                    args = (pinned_inputs[name], *args[1:])
            return args, kwargs

        return hook

    def post(name):
        def hook(module, args, output):
            outputs[name] = output[0].detach().clone()

        return hook

    for name, module in model.named_modules():
        if type(module).__name__ in ATTENTION:
            name = name.removeprefix("base_model.")
            handles += [
                module.register_forward_pre_hook(pre(name), with_kwargs=True),
                module.register_forward_hook(post(name)),
            ]
    with torch.no_grad():
        model(**batch)
    for handle in handles:
        handle.remove()
    return outputs, inputs


def reached(arch: str) -> tuple[set[str], set[str], set[str]]:
    """(all attention modules, those whose output changes with the prefix, those it reaches directly)."""
    bb, _, _ = setup(arch, "prefix_tuning", num_virtual_tokens=3)
    model, batch = bb.model.eval(), fixed_batch(bb)
    before, inputs = attention_outputs(model, batch)
    again, _ = attention_outputs(model, batch)
    assert all(torch.equal(before[k], again[k]) for k in before)  # control: same prefix, same outputs
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.add_(torch.randn_like(p))
    after, _ = attention_outputs(model, batch)
    pinned, _ = attention_outputs(model, batch, pinned_inputs=inputs)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    direct = {k for k in before if not torch.equal(before[k], pinned[k])}
    return set(before), changed, direct


def test_on_t5_the_prefix_reaches_only_the_decoder_self_attention():
    modules, changed, direct = reached("tiny-t5")
    encoder = {m for m in modules if m.startswith("encoder.")}
    decoder_self = {m for m in modules if m.startswith("decoder.") and m.endswith("SelfAttention")}
    cross = {m for m in modules if m.endswith("EncDecAttention")}
    assert len(encoder) == len(decoder_self) == len(cross) == 2
    assert direct == decoder_self  # prefix keys/values: decoder self-attention only
    assert changed == decoder_self | cross  # cross-attention changes only through its queries
    assert not changed & encoder  # the encoder never sees the prefix


@pytest.mark.parametrize("arch", ["tiny-gpt-neo", "tiny-llama"])
def test_on_decoder_only_models_the_prefix_reaches_every_self_attention(arch):
    modules, changed, direct = reached(arch)
    assert len(modules) == 2 and direct == changed == modules


def test_on_gpt_neo_local_attention_sees_the_prefix_only_within_its_window():
    bb, _, _ = setup("tiny-gpt-neo", "prefix_tuning", num_virtual_tokens=4)
    model, window = bb.model.eval(), bb.model.config.window_size  # 64; layer 0 global, layer 1 local
    ids = torch.randint(3, 300, (1, 100), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    before, inputs = attention_outputs(model, batch)
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.add_(torch.randn_like(p))
    pinned, _ = attention_outputs(model, batch, pinned_inputs=inputs)
    reached_positions = {k: int((before[k] - pinned[k]).abs().amax(-1).gt(0).sum()) for k in before}
    # The prefix fills cache positions 0..3 and token i sits at 4 + i: the local layer lets it see the
    # last prefix key (position 3) while (4 + i) - 3 < window, i.e. for the first window - 1 tokens.
    assert reached_positions == {"transformer.h.0.attn.attention": 100, "transformer.h.1.attn.attention": window - 1}


# ---- generation with transformers 5 caches ---------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_generate_with_cache_matches_greedy_by_hand(arch):
    bb, _, _ = setup(arch, "prefix_tuning")
    train_steps(bb, 3, 1e-2)
    prompts = ["Repeat: cat", "Repeat: a much longer owl", "Repeat: dog"]
    by_hand = [greedy_by_hand(bb, p) for p in prompts]
    assert any(len(ids) > 1 for ids in by_hand)  # not just an immediate end-of-sequence
    # peftlab's decoder pre-fills the cache with peft's prefix (an EncoderDecoderCache on T5).
    assert [generated_ids(bb, p) for p in prompts] == by_hand
    # Backbone.generate batches with padding (left on decoder-only models, right on T5).
    assert bb.generate(bb.model, prompts, max_new_tokens=6) == [by_hand_text(bb, p) for p in prompts]


@pytest.mark.parametrize("arch", ["tiny-gpt-neo", "tiny-llama"])
def test_activation_init_equals_real_tokens_before_the_input(arch, monkeypatch):
    """init='activations': the untrained prefix acts exactly like its vocabulary tokens placed
    before the input (Li & Liang 2021, section 7.2), so training starts from a real-text state."""
    n = 5
    base, _ = tiny_model(arch)
    drawn, randint = [], torch.randint  # the tokens are drawn from the (run-seeded) global generator

    def spy(*args, **kwargs):
        drawn.append(randint(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(torch, "randint", spy)
    bb, _, _ = setup(arch, "prefix_tuning", num_virtual_tokens=n)
    monkeypatch.undo()
    (ids,) = [t for t in drawn if t.shape == (1, n)]
    x = torch.tensor([[40, 41, 42, 43]])
    with torch.no_grad():
        as_text = base(input_ids=torch.cat([ids, x], dim=1)).logits[:, n:]
        as_prefix = bb.model(input_ids=x, attention_mask=torch.ones_like(x)).logits
    assert (as_text - as_prefix).abs().max().item() <= 1e-4
    random_bb, _, _ = setup(arch, "prefix_tuning", num_virtual_tokens=n, init="random")
    with torch.no_grad():
        assert (random_bb.model(input_ids=x, attention_mask=torch.ones_like(x)).logits - as_text).abs().max() > 1e-2
