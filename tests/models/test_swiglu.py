"""The lean SwiGLU backward (models/swiglu.py): the same bits as transformers' MLP, one tensor less kept."""

import contextlib

import pytest
import torch
from peft import LoraConfig, get_peft_model

from peftlab.models.swiglu import lean_swiglu
from peftlab.models.tiny import tiny_model


def lora_llama(lean: bool):
    model, _ = tiny_model("tiny-llama", seed=3)
    if lean:
        assert lean_swiglu(model) == model.config.num_hidden_layers
    # LoRA on every projection, the MLP's included (peft wraps gate/up/down_proj after the patch)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", init_lora_weights=False)
    torch.manual_seed(0)  # init_lora_weights=False draws lora_B too: the same draw for both
    return get_peft_model(model, cfg)


def loss_and_grads(model, ids, bf16: bool = False):
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_the_lean_mlp_gives_the_same_loss_and_gradients_to_the_bit(bf16):
    ids = torch.randint(3, 100, (3, 17), generator=torch.Generator().manual_seed(0))
    loss, grads = loss_and_grads(lora_llama(lean=False), ids, bf16)
    lean_loss, lean_grads = loss_and_grads(lora_llama(lean=True), ids, bf16)
    assert torch.equal(loss, lean_loss)
    assert grads.keys() == lean_grads.keys() and any("gate_proj" in n for n in grads)
    for name, g in grads.items():
        assert torch.equal(g, lean_grads[name]), name
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "up_proj.lora_A" in n)


def saved_bytes(model, ids) -> int:
    """Bytes autograd keeps for backward over one forward (each storage once)."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids).loss.backward()
    return sum(seen.values())


def test_the_lean_mlp_keeps_one_intermediate_tensor_less_per_layer():
    ids = torch.randint(3, 100, (2, 40), generator=torch.Generator().manual_seed(1))
    plain, lean = lora_llama(lean=False), lora_llama(lean=True)
    cfg = plain.config
    one = ids.numel() * cfg.intermediate_size * 4  # silu(gate), fp32, per layer
    assert saved_bytes(plain, ids) - saved_bytes(lean, ids) == cfg.num_hidden_layers * one


def test_only_swiglu_mlps_are_changed():
    gpt_neo, _ = tiny_model("tiny-gpt-neo")
    t5, _ = tiny_model("tiny-t5")
    assert lean_swiglu(gpt_neo) == 0 and lean_swiglu(t5) == 0
