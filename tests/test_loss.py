"""Backbone.kind.loss_sum: the loss at labelled positions only equals the model's own loss, with the same gradients."""

from __future__ import annotations

import pytest
import torch

from peftlab.methods import get_method, trainable_parameters
from peftlab.models.backbone import Backbone
from peftlab.models.causal import CAUSAL
from peftlab.models.kind import output_head
from peftlab.models.seq2seq import SEQ2SEQ
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS
from tests.test_flops import METHODS, batch_of


def build(arch: str, label: str) -> Backbone:
    model, tok = tiny_model(arch)
    name, options = METHODS[label]
    method = get_method(name)
    model = method.apply(model, method.config_cls(**options))
    with torch.no_grad():  # zero-initialised branches (lora_B, adapters' up) would hide a wrong gradient
        for p in trainable_parameters(model).values():
            if not p.any():
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(p.numel()))
    return Backbone(model=model, tokenizer=tok, source=arch)


def gradients(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in trainable_parameters(model).items() if p.grad is not None}


@pytest.mark.parametrize("label", [m for m in METHODS if m != "none"])
@pytest.mark.parametrize("arch", ARCHS)
def test_loss_and_gradients_equal_the_models_own(arch, label):
    bb = build(arch, label)
    bb.model.eval()  # no dropout: both passes must see the same network
    batch = batch_of(bb, 4, 8)
    reference = bb.model(**batch).loss
    reference.backward()
    expected = gradients(bb.model)
    bb.model.zero_grad()
    ours = bb.kind.loss_sum(bb.model, output_head(bb.model), batch) / bb.kind.labelled_tokens(batch)
    ours.backward()
    got = gradients(bb.model)
    assert torch.allclose(ours, reference, atol=1e-5), (float(ours), float(reference))
    assert expected and got.keys() == expected.keys()
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt-neo"])
@pytest.mark.parametrize("label", ["lora", "prompt_tuning"])
def test_the_head_of_a_decoder_only_model_sees_only_labelled_positions(arch, label):
    bb = build(arch, label)
    batch = batch_of(bb, 4, 8)
    rows = []
    head = output_head(bb.model)
    handle = head.register_forward_hook(lambda m, args, out: rows.append(args[0].shape))
    try:
        CAUSAL.loss_sum(bb.model, head, batch)
    finally:
        handle.remove()
    b, s = batch["input_ids"].shape
    n = CAUSAL.labelled_tokens(batch)
    assert rows == [torch.Size([n, bb.model.config.hidden_size])]
    assert n < b * s / 2  # the prompts are most of the tokens, so most of the head's work is saved


def test_labelled_tokens_counts_next_token_labels_for_decoder_only_models():
    labels = torch.tensor([[-100, -100, 5, 6, 2], [-100, 7, 2, -100, -100]])
    assert CAUSAL.labelled_tokens({"labels": labels}) == 5  # position 0 predicts nothing
    assert SEQ2SEQ.labelled_tokens({"labels": labels}) == 5
    assert CAUSAL.labelled_tokens({"labels": torch.tensor([[3, -100, 4]])}) == 1
