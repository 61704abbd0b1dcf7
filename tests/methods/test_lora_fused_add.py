"""LoRA's update added inside one GEMM in training (methods/lora_fused_add.py): the same losses and
gradients as peft's three passes (to rounding), taken only in training and only where it computes what
peft's forward does, in LoRA, QLoRA and hybrids alike, and an adapter that plain peft loads."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import PeftModel, get_peft_model

from peftlab.methods import get_method, trainable_parameters
from peftlab.methods.gates import CHILD
from peftlab.methods.lora import peft_config
from peftlab.methods.lora_fused_add import FusedAddLinear
from peftlab.models.backbone import Backbone
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS, fixed_batch
from tests.methods.harness import logits, setup

LORA = get_method("lora")


def _pair(arch: str, **options):
    """(fused, plain peft, batch) from the same weights, dropout 0 so both draw nothing."""
    base, tok = tiny_model(arch)
    cfg = LORA.config_cls(rank=4, dropout=0.0, **options)
    plain = get_peft_model(copy.deepcopy(base), peft_config(base, cfg))
    fused = LORA.apply(base, cfg)
    with torch.no_grad():  # lora_B starts at zero: give it values so the update is not nothing
        for p in plain.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    fused.load_state_dict(plain.state_dict())
    return fused, plain, fixed_batch(Backbone(model=fused, tokenizer=tok, source=arch))


def _steps(model, batch, steps: int = 3):
    torch.manual_seed(1)  # the base model's own dropouts draw the same in both
    opt = torch.optim.AdamW(trainable_parameters(model).values(), lr=1e-2)
    model.train()
    losses, grads = [], []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in trainable_parameters(model).items()})
        opt.step()
        opt.zero_grad()
    return losses, grads


class _CountAddmm:
    """Counts torch.addmm calls (the fused path's) while installed."""

    def __init__(self, monkeypatch):
        self.calls, real = 0, torch.addmm

        def counted(*a, **k):
            self.calls += 1
            return real(*a, **k)

        monkeypatch.setattr(torch, "addmm", counted)


def _layers(model) -> int:
    return sum(type(m) is FusedAddLinear for m in model.modules())


@pytest.mark.parametrize("alpha", [8.0, 6.0], ids=["scaling-2", "scaling-1.5"])
@pytest.mark.parametrize("arch", ARCHS)
def test_training_matches_peft_to_rounding_and_takes_the_fused_path(arch, alpha, monkeypatch):
    fused, plain, batch = _pair(arch, alpha=alpha)
    assert _layers(fused) > 0 and _layers(plain) == 0
    count = _CountAddmm(monkeypatch)
    lf, gf = _steps(fused, batch)
    assert count.calls >= 3 * _layers(fused)  # every LoRA Linear added its update by addmm, each step
    lp, gp = _steps(plain, batch)
    assert lf == pytest.approx(lp, rel=1e-5), (lf, lp)
    assert lf[-1] < lf[0]  # and it learns
    for a, b in zip(gf, gp):  # (with scaling 2 they were the same bits on the CPU measured: bench/RESULTS.md)
        for n in a:
            assert (a[n] - b[n]).abs().max() <= 1e-4 * b[n].abs().max(), n


def test_eval_and_generation_run_peft_s_forward_and_the_adapter_loads_in_plain_peft(tmp_path, monkeypatch):
    fused, plain, batch = _pair("tiny-llama")
    _steps(fused, batch, 2)
    count = _CountAddmm(monkeypatch)
    out = logits(fused.eval(), batch)
    assert count.calls == 0  # evaluation: peft's own forward
    assert fused.state_dict().keys() == plain.state_dict().keys()
    LORA.save(fused, tmp_path / "adapter")
    fresh, _ = tiny_model("tiny-llama")
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter")).eval()
    assert _layers(loaded) == 0
    assert torch.equal(logits(loaded, batch), out)  # what a finished run predicts, a reload predicts


def test_autocast_a_second_adapter_and_fused_add_off_take_peft_s_forward(monkeypatch):
    fused, _, batch = _pair("tiny-llama")
    count = _CountAddmm(monkeypatch)
    fused.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused(**batch)
    assert count.calls == 0
    fused.add_adapter("second", peft_config(fused, LORA.config_cls(rank=2, dropout=0.0)))
    fused.base_model.set_adapter(["default", "second"])
    fused(**batch)
    assert count.calls == 0  # two active adapters: peft's loop over them
    off, _, _ = _pair("tiny-llama", fused_add=False)
    assert _layers(off) == 0


def test_a_gated_hybrid_keeps_its_lora_gates_and_its_lora_gets_the_speed_options(monkeypatch):
    from peftlab.methods.lora_dropout import DropoutLinear

    lora = {"name": "lora", "rank": 4, "dropout": 0.1}
    bb, _, _ = setup("tiny-llama", "hybrid", methods=[lora, {"name": "series_adapter"}], gates=True)
    model = bb.model
    assert _layers(model) > 0 and any(type(m) is DropoutLinear and m.fast for m in model.modules())
    # the gate scales lora_B's output by a hook: the fused path, which skips lora_B's forward, stands aside
    with torch.no_grad():  # lora_B starts at zero, and so would the gates' gradients
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    count = _CountAddmm(monkeypatch)
    model.train()
    model(**fixed_batch(bb)).loss.backward()
    assert count.calls == 0
    lora_gates = [p for n, p in model.named_parameters() if CHILD in n and ".lora_" not in n and "proj" in n]
    assert lora_gates and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_gates)
    bb, _, _ = setup("tiny-llama", "hybrid", methods=[lora, {"name": "series_adapter"}])
    count.calls = 0
    bb.model.train()
    bb.model(**fixed_batch(bb)).loss.backward()
    assert count.calls >= _layers(bb.model) > 0  # without gates, the hybrid's LoRA adds by addmm


def test_qlora_leaves_its_4_bit_layers_on_peft_s_forward(monkeypatch):
    bb, _, _ = setup("tiny-llama", "qlora", rank=4, dropout=0.0)
    count = _CountAddmm(monkeypatch)
    bb.model.train()
    bb.model(**fixed_batch(bb)).loss.backward()
    assert count.calls == 0  # a 4-bit base is not an nn.Linear: peft's forward dequantizes it
