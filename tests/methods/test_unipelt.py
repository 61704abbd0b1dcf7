"""UniPELT (Mao et al., 2022): LoRA + prefix tuning + a bottleneck adapter, each behind a learned gate."""

from __future__ import annotations

import pytest
import torch

from peftlab.config import MethodConfig
from peftlab.errors import PeftlabError
from peftlab.methods import REGISTRY, method_options, trainable_parameters
from peftlab.methods.gates import CHILD
from tests.conftest import ARCHS, fixed_batch
from tests.methods.harness import logits, save_load_max_diff, setup, train_steps

LORA = {"name": "lora", "rank": 4, "dropout": 0.0}
UNIPELT = {
    "methods": [LORA, {"name": "prefix_tuning", "num_virtual_tokens": 3}, {"name": "series_adapter"}],
    "gates": True,
}


def gates_of(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if CHILD in n}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_component_gets_its_gate_and_the_count_is_exact(arch):
    bb, _, _ = setup(arch, "hybrid", **UNIPELT)
    model = bb.model
    lora_layers = [m for m in model.modules() if isinstance(getattr(m, "lora_B", None), torch.nn.ModuleDict)]
    adapters = [m for n, m in model.named_modules() if n.endswith(".series_adapter")]
    num_layers = model.peft_config["default"].num_layers
    expected = sum(m.in_features + 1 for m in lora_layers) + sum(a.down.in_features + 1 for a in adapters) + num_layers
    gates = gates_of(model)
    assert lora_layers and adapters and sum(p.numel() for p in gates.values()) == expected
    assert all(p.requires_grad for p in gates.values())
    owners = model.peftlab_hybrid["owners"]
    assert set(gates) <= set(owners) and set(trainable_parameters(model)) == set(owners)
    assert {owners[n] for n in gates} == {"lora", "prefix_tuning", "series_adapter"}


def test_a_gated_lora_layer_adds_sigmoid_of_its_gate_times_the_lora_term():
    bb, _, _ = setup("tiny-llama", "hybrid", **UNIPELT)
    layer = next(m for m in bb.model.modules() if isinstance(getattr(m, "lora_B", None), torch.nn.ModuleDict))
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
        getattr(layer, CHILD).weight.normal_()
    x = torch.randn(2, 5, layer.in_features)
    with torch.no_grad():
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        gate = torch.sigmoid(getattr(layer, CHILD)(x))
        by_hand = layer.base_layer(x) + gate * layer.scaling["default"] * (x @ a.T @ b.T)
        torch.testing.assert_close(layer(x), by_hand)
        assert 0.05 < gate.std().item()  # a gate per token, not a constant


def test_a_gated_adapter_and_a_gated_prefix_scale_their_outputs_by_hand():
    bb, _, _ = setup("tiny-llama", "hybrid", **UNIPELT)
    adapter = next(m for n, m in bb.model.named_modules() if n.endswith(".series_adapter"))
    with torch.no_grad():
        adapter.up.weight.normal_()
        getattr(adapter, CHILD).weight.normal_()
        h = torch.randn(2, 5, adapter.down.in_features)
        plain = adapter.scaling * adapter.up(torch.relu(adapter.down(h)))  # series adapter default: relu
        torch.testing.assert_close(adapter(h), plain * torch.sigmoid(getattr(adapter, CHILD)(h)))

        encoder = bb.model.prompt_encoder["default"]
        gate = getattr(encoder, CHILD)
        gate.logit.copy_(torch.linspace(-2, 2, gate.logit.numel()))
        tokens = torch.arange(3)[None]
        raw = encoder.embedding(tokens)  # (1, 3, layers * 2 * width): key, value of layer 0, then layer 1 ...
        out = encoder(tokens)
        layers = gate.logit.numel()
        kv, want = out.view(1, 3, layers, 2, -1), raw.view(1, 3, layers, 2, -1)
        torch.testing.assert_close(kv[:, :, :, 0], want[:, :, :, 0])  # keys untouched
        torch.testing.assert_close(kv[:, :, :, 1], want[:, :, :, 1] * torch.sigmoid(gate.logit)[:, None])


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_falls_only_its_parameters_change_and_the_gates_learn(arch):
    bb, method, cfg = setup(arch, "hybrid", **UNIPELT)
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    first, last = train_steps(bb, 12, method.lr(cfg))
    assert last < first
    changed = {n for n, p in bb.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= set(trainable_parameters(bb.model))
    assert {n for n in changed if CHILD in n}, "no gate changed"


@pytest.mark.parametrize("arch", ARCHS)
def test_save_then_load_reproduces_the_logits(arch, tmp_path):
    assert save_load_max_diff(arch, "hybrid", tmp_path, lr=1e-2, **UNIPELT) <= 1e-5


def test_with_every_gate_open_it_is_the_same_hybrid_without_gates():
    plain, _, _ = setup("tiny-llama", "hybrid", **{**UNIPELT, "gates": False})
    gated, _, _ = setup("tiny-llama", "hybrid", **UNIPELT)
    assert not gates_of(plain.model)
    with torch.no_grad():
        for n, p in plain.model.named_parameters():
            if p.requires_grad and ("lora_B" in n or ".up." in n):
                p.normal_()  # the branches the gates scale, no longer zero
        gated.model.load_state_dict(plain.model.state_dict(), strict=False)  # same weights but the gates
        for n, p in gates_of(gated.model).items():
            p.fill_(0.0 if n.endswith(".weight") else 30.0)  # sigmoid(30) = 1 - 1e-13: open
    batch = fixed_batch(plain)
    torch.testing.assert_close(logits(gated.model, batch), logits(plain.model, batch), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for p in gates_of(gated.model).values():
            p.fill_(-30.0)  # closed: LoRA and the adapter switched off, the prefix values zero
    assert (logits(gated.model, batch) - logits(plain.model, batch)).abs().max() > 1e-2


def test_the_label_is_unipelt_and_other_gated_hybrids_say_gated():
    hybrid = REGISTRY["hybrid"]
    assert hybrid.label({"name": "hybrid", **UNIPELT}) == "unipelt"
    mam = {"name": "hybrid", "gates": True, "methods": [{"name": "prefix_tuning"}, {"name": "parallel_adapter"}]}
    assert hybrid.label(mam) == "gated-prefix_tuning+parallel_adapter"
    assert hybrid.label({**mam, "gates": False}) == "prefix_tuning+parallel_adapter"


@pytest.mark.parametrize(
    ("component", "message"),
    [
        ({"name": "ia3"}, "'ia3' has no UniPELT gate"),
        ({"name": "lora", "use_dora": True}, "use_dora"),
    ],
)
def test_a_component_without_a_gate_is_refused_by_name(component, message):
    entry = {"name": "hybrid", "gates": True, "methods": [component, {"name": "prefix_tuning"}]}
    with pytest.raises(PeftlabError, match=message):
        method_options(MethodConfig.model_validate(entry))
