"""The analytical FLOP count (peftlab.measure.flops) against torch's FlopCounterMode, on every tiny model and method."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from peftlab.measure.flops import StepFlops
from peftlab.methods import get_method
from peftlab.models.backbone import Backbone
from peftlab.models.causal import CAUSAL
from peftlab.models.kind import output_head
from peftlab.models.tiny import tiny_model
from tests.conftest import ARCHS

PA = {"name": "parallel_adapter"}
METHODS = {
    "none": ("none", {}),
    "full": ("full", {}),
    "last_layers": ("last_layers", {"num_layers": 1}),
    "last_layers+head": ("last_layers", {"num_layers": 1, "train_head": True}),
    "lora": ("lora", {"rank": 4}),
    "dora": ("lora", {"rank": 4, "use_dora": True}),  # its weight norm is measured (flops_tuners.py)
    "ia3": ("ia3", {}),
    "prompt_tuning": ("prompt_tuning", {"num_virtual_tokens": 10}),
    "prefix_tuning": ("prefix_tuning", {"num_virtual_tokens": 10}),
    "prefix_tuning+mlp": ("prefix_tuning", {"num_virtual_tokens": 10, "prefix_projection": True}),
    "parallel_adapter": ("parallel_adapter", {"target": "both", "reduction_factor": 4}),
    "series_adapter houlsby": ("series_adapter", {"placement": "houlsby", "reduction_factor": 4}),
    "hybrid lora+prompt": ("hybrid", {"methods": [{"name": "lora", "rank": 4}, {"name": "prompt_tuning"}]}),
    "hybrid MAM": ("hybrid", {"methods": [{"name": "prefix_tuning"}, PA]}),
    "unipelt": (  # gates on LoRA layers (peft tuner layers, measured whole), adapters and the prefix
        "hybrid",
        {
            "methods": [{"name": "lora", "rank": 4}, {"name": "prefix_tuning"}, {"name": "series_adapter"}],
            "gates": True,
        },
    ),
}
WORDS = ["cat", "river", "stone", "a", "cloud", "maple", "tiger", "ocean", "piano", "lemon", "amber", "cedar"]


def build(arch: str, label: str) -> Backbone:
    model, tok = tiny_model(arch)
    # Eager attention: on CPU, torch's fused SDPA kernel has no FlopCounterMode formula and would
    # count as 0; eager attention runs as matmuls the counter sees (and the same FLOPs are done).
    model.set_attn_implementation("eager")
    name, options = METHODS[label]
    method = get_method(name)
    model = method.apply(model, method.config_cls(**options))
    return Backbone(model=model, tokenizer=tok, source=arch)


def batch_of(bb: Backbone, n: int = 4, max_words: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """A collated batch of n random prompts/targets of uneven lengths (so there is padding)."""
    g = torch.Generator().manual_seed(seed)

    def text(k: int) -> str:
        return " ".join(WORDS[i] for i in torch.randint(len(WORDS), (k,), generator=g).tolist())

    pairs = [
        (
            f"Repeat: {text(int(torch.randint(1, max_words + 1, (1,), generator=g)))}",
            text(int(torch.randint(1, max_words + 1, (1,), generator=g))),
        )
        for _ in range(n)
    ]
    return bb.collate([bb.encode(p, t) for p, t in pairs])


def measured(bb: Backbone, batch: dict[str, torch.Tensor]) -> int:
    bb.model.train()
    with FlopCounterMode(display=False) as counter:
        loss = bb.kind.loss_sum(bb.model, output_head(bb.model), batch)
        if loss.requires_grad:  # method 'none': nothing trains, forward only
            loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("label", list(METHODS))
@pytest.mark.parametrize("arch", ARCHS)
def test_count_matches_flop_counter_mode(arch, label):
    bb = build(arch, label)
    count = StepFlops(bb.model, bb.is_seq2seq)  # analysed once, then used on batches of other shapes
    for n, max_words in ((4, 6), (3, 14)):
        batch = batch_of(bb, n, max_words)
        counted, truth = count(batch), measured(bb, batch)
        error = (counted - truth) / truth
        print(
            f"{arch:13s} {label:19s} batch {tuple(batch['input_ids'].shape)!s:8s} counted {counted:>11,d} "
            f"measured {truth:>11,d} error {100 * error:+.2f}%"
        )
        assert abs(error) < 0.10


@pytest.mark.parametrize("arch", ARCHS)
def test_count_grows_with_sequence_length(arch):
    bb = build(arch, "lora")
    count = StepFlops(bb.model, bb.is_seq2seq)
    short, long = batch_of(bb, 4, 2), batch_of(bb, 4, 12)
    assert long["input_ids"].shape[1] > short["input_ids"].shape[1]
    assert count(long) > count(short) and count.forward(long) > count.forward(short)


@pytest.mark.parametrize("arch", ARCHS)
def test_freezing_all_but_the_last_layer_saves_backward_flops(arch):
    full, last = build(arch, "full"), build(arch, "last_layers")
    batch = batch_of(full)
    full_count, last_count = StepFlops(full.model, full.is_seq2seq), StepFlops(last.model, last.is_seq2seq)
    assert last_count.forward(batch) == full_count.forward(batch)  # same network forward
    assert 0 < last_count.backward(batch) < full_count.backward(batch)
    assert full_count.backward(batch) == 2 * full_count.forward(batch)  # every matmul needs both gradients


def test_zero_shot_counts_the_forward_only():
    bb = build("tiny-llama", "none")
    count, batch = StepFlops(bb.model, False), batch_of(bb)
    assert count.backward(batch) == 0 and count(batch) == count.forward(batch) > 0


def test_full_fine_tuning_is_kaplans_6n_plus_attention():
    """Kaplan et al. (2020): training a dense model costs 6N FLOPs per token for its N matmul weights,
    plus attention: 2 * 2 * S * width per token and layer forward (QK^T and AV), 3x with backward.
    The output head (tied to the embeddings) runs only at the positions that have a label."""
    bb = build("tiny-llama", "full")
    batch = batch_of(bb)
    b, s = batch["input_ids"].shape
    c = bb.model.config
    head = bb.model.lm_head.weight.numel()
    n = sum(m.weight.numel() for m in bb.model.modules() if isinstance(m, torch.nn.Linear)) - head
    attention = c.num_hidden_layers * 2 * 2 * b * s * s * c.hidden_size
    labelled = CAUSAL.labelled_tokens(batch)
    assert 0 < labelled < b * s
    assert StepFlops(bb.model, False)(batch) == 6 * n * b * s + 6 * head * labelled + 3 * attention


@pytest.mark.parametrize("arch", ARCHS)
def test_counting_a_step_never_runs_the_model(arch, monkeypatch):
    bb = build(arch, "hybrid MAM")
    count, batch = StepFlops(bb.model, bb.is_seq2seq), batch_of(bb)

    def refuse(*args, **kwargs):
        raise AssertionError("StepFlops called a module while counting a step")

    monkeypatch.setattr(torch.nn.Module, "__call__", refuse)
    assert count(batch) > count.forward(batch) > 0


def test_building_the_counter_leaves_the_model_as_it_was():
    bb = build("tiny-gpt-neo", "parallel_adapter")  # the adapters' own forward hooks must stay
    model = bb.model.train()
    hooks = sum(len(m._forward_hooks) for m in model.modules())
    rng = torch.get_rng_state()
    StepFlops(model, False)
    assert all(m.training for m in model.modules())
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())


def test_seq2seq_decoder_length_comes_from_labels_or_decoder_input_ids():
    bb = build("tiny-t5", "lora")
    count, batch = StepFlops(bb.model, True), batch_of(bb)
    longer = dict(batch, labels=torch.cat([batch["labels"], batch["labels"]], dim=1))
    assert count(longer) > count(batch)
    explicit = dict(batch, decoder_input_ids=longer["labels"])
    assert count(explicit) == count(longer)


@pytest.mark.parametrize("arch", ARCHS)
def test_qlora_counts_the_matmuls_of_lora_on_the_same_shapes(arch):
    """bitsandbytes' 4-bit matmul is invisible to FlopCounterMode; QLoRA does LoRA's matmuls on the
    same shapes (plus dequantizing, elementwise): the count must equal LoRA's, not the counter's.
    Without dropout, whose LoRA (methods/lora_dropout.py) redoes lora_A's matmul in backward."""
    lora = build_with(arch, "lora", {"rank": 4, "dropout": 0.0})
    qlora = build_with(arch, "qlora", {"rank": 4, "dropout": 0.0})
    fused = build_with(arch, "lora", {"rank": 4, "dropout": 0.1, "fused_dropout": True})
    for n, max_words in ((4, 6), (3, 14)):
        batch = batch_of(lora, n, max_words)
        plain = StepFlops(lora.model, lora.is_seq2seq)(batch)
        assert StepFlops(qlora.model, qlora.is_seq2seq)(batch) == plain
        # LoRA's folded dropout replays lora_A in backward: counted, as checkpointing's recompute is.
        assert plain < StepFlops(fused.model, fused.is_seq2seq)(batch) < 1.1 * plain  # rank 4 of width 32


def build_with(arch: str, name: str, options: dict) -> Backbone:
    model, tok = tiny_model(arch)
    model.set_attn_implementation("eager")
    method = get_method(name)
    return Backbone(model=method.apply(model, method.config_cls(**options)), tokenizer=tok, source=arch)
