"""LoRA's dropout folded into lora_A (methods/lora_dropout.py): the same bits as peft's unfused
path (losses, gradients, the random stream), less memory kept for backward, and an adapter that plain
peft still loads."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import PeftModel, get_peft_model
from torch import nn

from peftlab.methods import get_method, trainable_parameters
from peftlab.methods.lora import peft_config
from peftlab.methods.lora_dropout import DropoutLinear
from peftlab.models.backbone import Backbone
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS, fixed_batch
from tests.methods.harness import logits

LORA = get_method("lora")


def _pair(arch: str, checkpointing: bool = False, **options):
    """(fused, unfused, batch): peftlab's LoRA and plain peft's, from the same weights."""
    base, tok = tiny_model(arch)
    if checkpointing:  # as run_model.py enables it, before the method is applied
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    options.setdefault("fast_dropout", False)  # torch's draw: peft's bits
    options.setdefault("fused_add", False)  # peft's add (test_lora_fused_add.py tests the fused one)
    cfg = LORA.config_cls(rank=4, dropout=0.1, fused_dropout=True, **options)
    unfused = get_peft_model(copy.deepcopy(base), peft_config(base, cfg))
    fused = LORA.apply(base, cfg)
    fused.load_state_dict(unfused.state_dict())
    return fused, unfused, fixed_batch(Backbone(model=fused, tokenizer=tok, source=arch))


def _train(model, batch, steps: int, autocast: bool):
    """Losses and the lora gradients of each step, then one draw of the random stream."""
    torch.manual_seed(1)
    opt = torch.optim.AdamW(trainable_parameters(model).values(), lr=1e-2)
    model.train()
    losses, grads = [], []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in trainable_parameters(model).items()})
        opt.step()
        opt.zero_grad()
    return losses, grads, torch.rand(4)


def _fused_count(model) -> int:
    return sum(isinstance(m, DropoutLinear) for m in model.modules())


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("arch", ARCHS)
def test_losses_and_gradients_are_peft_unfused_to_the_bit(arch, autocast):
    fused, unfused, batch = _pair(arch)
    assert _fused_count(fused) > 0 and _fused_count(unfused) == 0
    # three steps: from the second on lora_B is non-zero, so lora_A's gradient (the recomputed part) is too
    lf, gf, rf = _train(fused, batch, 3, autocast)
    lu, gu, ru = _train(unfused, batch, 3, autocast)
    assert all(torch.equal(a, b) for a, b in zip(lf, lu)), (lf, lu)
    for step, (a, b) in enumerate(zip(gf, gu)):
        assert a.keys() == b.keys()
        assert step == 0 or any("lora_A" in n and a[n].abs().sum() > 0 for n in a)
        assert all(torch.equal(a[n], b[n]) for n in a), f"step {step}"
    assert torch.equal(rf, ru), "the replayed dropout must not shift the random stream"


def test_activation_checkpointing_replays_the_same_dropout():
    """The layer's recomputation re-runs the fused node's forward; its dropout must draw the same mask."""
    fused, unfused, batch = _pair("tiny-llama", checkpointing=True)
    lf, gf, rf = _train(fused, batch, 3, True)
    lu, gu, ru = _train(unfused, batch, 3, True)
    assert all(torch.equal(a, b) for a, b in zip(lf, lu))
    assert all(torch.equal(a[n], b[n]) for a, b in zip(gf, gu) for n in a)
    assert torch.equal(rf, ru)


def _saved_bytes(model, batch) -> int:
    """Bytes of the storages autograd keeps for backward in one training forward (weights excluded,
    a storage counted once): deterministic, unlike a process's peak memory."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**batch)  # the loss is part of what is kept
    return sum(seen.values())


def test_fused_dropout_keeps_clearly_less_for_backward():
    fused, unfused, batch = _pair("tiny-llama")
    f, u = _saved_bytes(fused, batch), _saved_bytes(unfused, batch)
    # unfused, each projection keeps dropout's noise and the dropped input (two fp32 tensors of its
    # input's size); fused, only x, shared by the projections reading it: at least one input-sized
    # tensor per projection less (measured: 1.31x that; the whole forward keeps 68% of the unfused bytes)
    tokens = batch["input_ids"].numel()
    one_each = sum(m.in_features * tokens * 4 for m in fused.modules() if isinstance(m, DropoutLinear))
    assert u - f >= one_each, (f, u, one_each)
    assert f < 0.75 * u, (f, u)


def test_adapter_loads_in_plain_peft_with_the_same_outputs(tmp_path):
    fused, unfused, batch = _pair("tiny-llama")
    _train(fused, batch, 2, False)
    assert fused.state_dict().keys() == unfused.state_dict().keys()
    LORA.save(fused, tmp_path / "adapter")
    fresh, _ = tiny_model("tiny-llama")
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter")).eval()
    assert _fused_count(loaded) == 0  # plain peft, its own nn.Dropout
    assert torch.equal(logits(loaded, batch), logits(fused.eval(), batch))


def test_dora_stays_on_peft_path_and_trains():
    fused, unfused, batch = _pair("tiny-llama", use_dora=True)
    assert _fused_count(fused) == 0
    assert any(isinstance(m, nn.Dropout) for m in fused.modules())
    lf, _, _ = _train(fused, batch, 3, False)
    lu, _, _ = _train(unfused, batch, 3, False)
    assert all(torch.equal(a, b) for a, b in zip(lf, lu))


def test_merge_of_a_fused_model_gives_its_eval_outputs():
    fused, _, batch = _pair("tiny-llama")
    _train(fused, batch, 2, False)
    ref = logits(fused.eval(), batch)
    merged = fused.merge_and_unload()
    assert torch.allclose(logits(merged, batch), ref, atol=1e-5)


def test_zero_dropout_is_left_to_peft():
    base, _ = tiny_model("tiny-llama")
    model = LORA.apply(base, LORA.config_cls(rank=4, dropout=0.0, fused_dropout=True))
    assert _fused_count(model) == 0


def test_by_default_the_dropout_is_folded_with_fast_masks_and_off_it_is_peft_s_path():
    base, _ = tiny_model("tiny-llama")
    default = LORA.apply(base, LORA.config_cls(rank=4, dropout=0.1))
    folded = [m for m in default.modules() if isinstance(m, DropoutLinear)]
    assert folded and len(folded) == _fused_count(default) and all(m.fast for m in folded)
    base, _ = tiny_model("tiny-llama")
    plain = LORA.apply(base, LORA.config_cls(rank=4, dropout=0.1, fused_dropout=False, fast_dropout=False))
    assert _fused_count(plain) == 0
    assert {type(m.lora_dropout["default"]) for m in plain.modules() if hasattr(m, "lora_dropout")} == {nn.Dropout}


def test_keep_mask_keeps_one_minus_p_in_every_16_bit_lane_and_draws_anew():
    from peftlab.methods.lora_dropout import keep_mask

    torch.manual_seed(0)
    x = torch.empty(1000, 1000)
    for p in (0.05, 0.5):
        mask = keep_mask(x, p)
        assert mask.shape == x.shape and mask.dtype == torch.bool
        lanes = mask.flatten().view(-1, 4).float().mean(0)  # each 16-bit quarter of the 64-bit draws
        sigma = (p * (1 - p) / 250_000) ** 0.5
        assert torch.all((lanes - (1 - p)).abs() < 5 * sigma), lanes
    assert not torch.equal(keep_mask(x, 0.5), keep_mask(x, 0.5))


def test_fast_dropout_preserves_the_mean_and_zeroes_what_it_drops():
    from peftlab.methods.lora_dropout import fast_dropout

    torch.manual_seed(0)
    out = fast_dropout(torch.ones(1000, 1000), 0.1)
    assert abs(float(out.mean()) - 1.0) < 0.005
    values = out.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - round(0.1 * 65536) / 65536))


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_dropout_fused_or_not_gives_the_same_bits_and_trains(arch):
    """With fast_dropout the fused path (mask replayed in backward) equals the unfused FastDropout module."""
    from peftlab.methods.lora_dropout import FastDropout

    base, tok = tiny_model(arch)
    fused = LORA.apply(copy.deepcopy(base), LORA.config_cls(rank=4, dropout=0.1, fused_dropout=True, fast_dropout=True))
    plain = LORA.apply(base, LORA.config_cls(rank=4, dropout=0.1, fused_dropout=False, fast_dropout=True))
    plain.load_state_dict(fused.state_dict())
    assert any(isinstance(m, FastDropout) for m in plain.modules()) and _fused_count(fused) > 0
    assert all(m.fast for m in fused.modules() if isinstance(m, DropoutLinear))
    batch = fixed_batch(Backbone(model=fused, tokenizer=tok, source=arch))
    (loss_f, grad_f, rng_f), (loss_p, grad_p, rng_p) = (_train(m, batch, 4, False) for m in (fused, plain))
    assert torch.equal(torch.stack(loss_f), torch.stack(loss_p)) and torch.equal(rng_f, rng_p)
    assert all(torch.equal(a[n], b[n]) for a, b in zip(grad_f, grad_p) for n in a)
    assert loss_f[-1] < loss_f[0]
