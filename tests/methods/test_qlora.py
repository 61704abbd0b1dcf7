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


def test_the_untrained_model_is_the_base_with_its_weights_rounded_to_nf4():
    q, _, _ = setup("tiny-llama", "qlora", rank=4)
    full, _ = tiny_model("tiny-llama")
    rounded, errors = {}, {}
    for name, m in q.model.named_modules():
        if isinstance(m, bnb.nn.Linear4bit):
            w = bnb.functional.dequantize_4bit(m.weight.data, m.weight.quant_state)
            key = name.removeprefix("base_model.model.").removesuffix(".base_layer") + ".weight"
            exact = full.get_parameter(key)
            errors[key] = ((w - exact).norm() / exact.norm()).item()
            rounded[key] = w
    # Rounded, not replaced: 16 levels per 64-weight block miss a Gaussian layer by ~9% (measured on
    # 576-wide layers); these 32-wide random layers, where a block's outliers set its scale, by 9-42%.
    assert rounded and all(0 < e < 0.5 for e in errors.values()), errors
    with torch.no_grad():
        for key, w in rounded.items():
            full.get_parameter(key).copy_(w)
    batch = fixed_batch(q)
    # The same numerics on every CPU (bitsandbytes' AVX512-BF16 repacking is turned off).
    torch.testing.assert_close(logits(q.model, batch), logits(full, batch), rtol=1e-4, atol=1e-4)


def test_loss_falls_and_only_lora_trains():
    bb, _, _ = setup("tiny-llama", "qlora", rank=8)
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    first, last = train_steps(bb, 30, 1e-2)
    assert last < first / 2, (first, last)
    changed = {n for n, p in bb.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)


def test_qlora_takes_loras_dropout_options_and_still_learns():
    from peftlab.methods.lora_dropout import DropoutLinear, FastDropout

    def dropouts(**options) -> list[tuple[type, bool]]:
        bb, _, _ = setup("tiny-llama", "qlora", rank=8, dropout=0.1, **options)
        layers = [m for m in bb.model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)]
        assert any(isinstance(m.base_layer, bnb.nn.Linear4bit) for m in layers)
        return bb, [(type(m.lora_dropout["default"]), getattr(m.lora_A["default"], "fast", None)) for m in layers]

    assert {kind for kind, _ in dropouts(fast_dropout=False, fused_dropout=False)[1]} == {nn.Dropout}  # peft's
    assert {kind for kind, _ in dropouts(fused_dropout=False)[1]} == {FastDropout}
    bb, folded = dropouts()  # the defaults: folded, fast masks
    assert set(folded) == {(nn.Identity, True)}  # folded into lora_A (a DropoutLinear), fast masks
    assert all(type(m) is DropoutLinear for n, m in bb.model.named_modules() if n.endswith("lora_A.default"))
    first, last = train_steps(bb, 8, 1e-2)  # 6.4 -> 1.9 when measured
    assert last < first / 2, (first, last)


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
