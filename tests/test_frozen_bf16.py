"""precision.store_frozen_linears: under bf16 autocast, storing the frozen nn.Linear weights in bf16
once (instead of autocast recasting them at every forward) changes no bit of what any method computes:
logits, greedy generations, training losses and gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from peftlab.measure.precision import store_frozen_linears
from peftlab.methods import trainable_parameters
from tests.conftest import ARCHS, fixed_batch
from tests.methods.harness import logits, misfits, setup, train_steps
from tests.methods.test_peft_tuner import TYPES
from tests.models.test_decode import CASES, IDS, PROMPTS

PEFT_TYPES = [t for t in TYPES if t != "P_TUNING"]  # P-tuning is among CASES
# peft knows no layer norm names of GPT-Neo: LN tuning is refused there.
ALL = [(a, *c, i) for a in ARCHS for c, i in zip(CASES, IDS) if (a, c[0]) not in misfits(ARCHS)] + [
    (a, "peft", {"type": t, **TYPES[t]}, f"peft-{t}")
    for a in ARCHS
    for t in PEFT_TYPES
    if not (t == "LN_TUNING" and a == "tiny-gpt-neo")
]
ALL += [(a, "lora", {"use_dora": True}, "dora") for a in ARCHS]  # DoRA: its norm of base + delta sees the stored dtype


def _outputs(bb):
    batch = fixed_batch(bb)
    with bb.numerics():
        out = logits(bb.model, batch)
    return out, bb.generate_ids(bb.model, PROMPTS, max_new_tokens=5, batch_size=2)


@pytest.mark.parametrize(("arch", "name", "options"), [c[:3] for c in ALL], ids=[f"{c[0]}-{c[3]}" for c in ALL])
@pytest.mark.parametrize("loaded", [False, True], ids=["training", "loaded"])
def test_evaluation_is_bit_identical_with_frozen_linears_in_bf16(arch, name, options, loaded):
    """training: as in a run (the method's tensors still train); loaded: as `peftlab evaluate` loads a
    finished run, every tensor frozen, the method's own linear layers included."""
    bb, method, cfg = setup(arch, name, **options)
    if trainable_parameters(bb.model):
        train_steps(bb, 2, method.lr(cfg))  # so the method's own tensors change the output
    bb.model.eval()
    if loaded:
        bb.model.requires_grad_(False)
    bb.compute_dtype = torch.bfloat16
    trainable = {n: p.detach().clone() for n, p in trainable_parameters(bb.model).items()}
    ref_logits, ref_ids = _outputs(bb)
    changed = store_frozen_linears(bb.model, torch.bfloat16)
    got_logits, got_ids = _outputs(bb)
    assert torch.equal(got_logits, ref_logits)
    assert got_ids == ref_ids
    for n, p in trainable_parameters(bb.model).items():  # the optimizer's tensors keep their fp32 copy
        assert p.dtype == torch.float32 and torch.equal(p, trainable[n]), n
    if name in ("lora", "prompt_tuning", "none") and not options.get("use_dora"):  # a frozen base: in bf16
        assert changed > 0
    _dora_bases_kept_in_fp32(bb.model)


@pytest.mark.parametrize("arch", ARCHS)
def test_tied_embeddings_trainable_weights_and_fp32_runs_are_left_alone(arch):
    bb, _, _ = setup(arch, "lora", rank=4)
    model = bb.model
    assert store_frozen_linears(model, None) == 0  # fp32: nothing to store
    store_frozen_linears(model, torch.bfloat16)
    embeddings = model.get_input_embeddings().weight
    assert embeddings.dtype == torch.float32  # an embedding lookup is not autocast
    head = model.get_output_embeddings().weight
    tied = head.data_ptr() == embeddings.data_ptr()
    assert head.dtype == (torch.float32 if tied else torch.bfloat16)
    for n, p in model.named_parameters():
        if "lora_" in n:
            assert p.dtype == torch.float32, n
        elif "layernorm" in n.lower() or "norm" in n.split(".")[-2].lower():
            assert p.dtype == torch.float32, n


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("lora", {}),
        ("lora", {"use_dora": True}),  # its magnitude divides by the norm of base + delta: base weights enter
        ("prefix_tuning", {}),
        ("parallel_adapter", {}),
        ("last_layers", {"num_layers": 1}),
    ],
    ids=["lora", "dora", "prefix_tuning", "parallel_adapter", "last_layers"],
)
def test_a_training_step_is_bit_identical_with_frozen_linears_in_bf16(arch, name, options):
    bb, _, _ = setup(arch, name, **options)
    other = copy.deepcopy(bb.model)
    # DoRA's base layers stay in fp32 (the norm of base + delta is taken in the stored dtype); on a
    # tied-embedding model every other linear layer is adapted, so nothing else is stored either.
    assert store_frozen_linears(other, torch.bfloat16) > 0 or options.get("use_dora")
    _dora_bases_kept_in_fp32(other)
    batch = fixed_batch(bb)
    grads = []
    for model in (bb.model, other):
        model.train()
        torch.manual_seed(0)  # the same dropout masks
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in trainable_parameters(model).items()}))
    (loss_a, grads_a), (loss_b, grads_b) = grads
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for n in grads_a:
        assert torch.equal(grads_a[n], grads_b[n]), n


def _dora_bases_kept_in_fp32(model) -> None:
    for name, module in model.named_modules():
        if any(getattr(module, "use_dora", {}).values() if isinstance(getattr(module, "use_dora", None), dict) else []):
            assert module.base_layer.weight.dtype == torch.float32, name


@pytest.mark.parametrize(("precision", "stored"), [("bf16", True), ("fp32", False)])
def test_the_summary_records_the_frozen_weights_held_in_bf16(tmp_path, copy_task, precision, stored):
    """They change the memory columns: summary.json says how many frozen parameters were in bf16."""
    import json

    from peftlab.training.train import train
    from tests.test_train import make_config

    cfg = make_config(tmp_path, copy_task, "tiny-t5", max_steps=2, eval_every=None, precision=precision)
    s = json.loads((train(cfg) / "summary.json").read_text())
    # LoRA's frozen base linear layers are stored in bf16 under bf16 compute, kept in fp32 otherwise
    assert (s["frozen_bf16_params"] > 0) is stored, s["frozen_bf16_params"]
