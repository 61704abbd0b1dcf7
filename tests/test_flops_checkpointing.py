"""train.gradient_checkpointing reruns each transformer block's forward during backward: the FLOP
count includes that recomputation (one more forward of everything but the output head)."""

from __future__ import annotations

import pytest
import torch

from peftlab.measure.flops import StepFlops
from peftlab.methods import get_method
from peftlab.models.backbone import Backbone
from peftlab.models.causal import CAUSAL
from peftlab.models.kind import output_head
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS
from tests.test_flops import METHODS, batch_of, measured

LABELS = ("full", "lora", "last_layers", "prompt_tuning", "parallel_adapter")


def build(arch: str, label: str) -> Backbone:
    """As train.load_model builds it with gradient_checkpointing: true (eager attention, which
    FlopCounterMode can see)."""
    model, tok = tiny_model(arch)
    model.set_attn_implementation("eager")
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    name, options = METHODS[label]
    method = get_method(name)
    return Backbone(model=method.apply(model, method.config_cls(**options)), tokenizer=tok, source=arch)


def set_checkpointing(model: torch.nn.Module, on: bool) -> None:
    for m in model.modules():
        if hasattr(m, "_gradient_checkpointing_func"):
            m.gradient_checkpointing = on


def head_forward(bb: Backbone, batch: dict) -> int:
    head = output_head(bb.model)
    b, s = batch["input_ids"].shape
    rows = b * batch["labels"].shape[1] if bb.is_seq2seq else CAUSAL.labelled_tokens(batch)
    return 2 * head.in_features * head.out_features * rows


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("arch", ARCHS)
def test_checkpointing_adds_one_forward_of_everything_but_the_head(arch, label):
    bb = build(arch, label)
    batch = batch_of(bb)
    checkpointed = StepFlops(bb.model, bb.is_seq2seq)
    set_checkpointing(bb.model, False)
    plain = StepFlops(bb.model, bb.is_seq2seq)
    recomputed = checkpointed(batch) - plain(batch)
    assert recomputed == plain.forward(batch) - head_forward(bb, batch) > 0
    assert checkpointed.forward(batch) == plain.forward(batch)  # the forward itself is unchanged
    assert checkpointed.backward(batch) == plain.backward(batch) + recomputed


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("arch", ARCHS)
def test_checkpointed_count_matches_flop_counter_mode(arch, label):
    """Against torch's own count of a real checkpointed backward. torch stops recomputing a block
    once every tensor its backward needs is back, so a block's last matmul may not rerun: the count
    errs on the high side, by at most that matmul per block."""
    bb = build(arch, label)
    count = StepFlops(bb.model, bb.is_seq2seq)
    batch = batch_of(bb, 3, 14)
    counted, truth = count(batch), measured(bb, batch)
    error = (counted - truth) / truth
    print(f"{arch:13s} {label:17s} counted {counted:>11,d} measured {truth:>11,d} error {100 * error:+.2f}%")
    assert 0 <= error < 0.06
