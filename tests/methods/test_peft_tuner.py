"""Every other peft tuner by type (``{name: peft, type: ...}``) in peftlab's harness, on the tiny models.

The registry's own checks (tests/methods/test_every_method.py, tests/models/test_decode.py) run the
method with its default type (LoHa) on every architecture; here each type runs them on tiny-llama.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peftlab import cli
from peftlab.config import MethodConfig
from peftlab.console import console
from peftlab.errors import PeftlabError
from peftlab.measure.flops import StepFlops
from peftlab.methods import count_parameters, get_method, method_options, trainable_parameters
from peftlab.models.tiny import tiny_model
from tests.methods.harness import plain_peft_max_diff, save_load_max_diff, setup, train_steps
from tests.test_flops import batch_of, measured

ALL_LINEAR = {"target_modules": "all-linear"}
TYPES = {
    "LOHA": {"r": 4, "alpha": 8, **ALL_LINEAR},
    "LOKR": {"r": 4, "alpha": 8, **ALL_LINEAR},
    "VERA": {"r": 8, **ALL_LINEAR},
    "OFT": {"r": 0, "oft_block_size": 4, **ALL_LINEAR},
    "BOFT": {"boft_block_size": 4, **ALL_LINEAR},
    "FOURIERFT": {"n_frequency": 16, **ALL_LINEAR},
    "LN_TUNING": {},
    "P_TUNING": {"num_virtual_tokens": 4, "encoder_hidden_size": 16},
    "ADALORA": {"init_r": 4, "target_r": 2, "total_step": 10, **ALL_LINEAR},  # its loop: test_adalora.py
}


def peft(kind: str, arch: str = "tiny-llama"):
    return setup(arch, "peft", type=kind, **TYPES[kind])


def linears(arch: str) -> list[nn.Linear]:
    """What 'all-linear' targets: every Linear of the base model but the output head."""
    model = tiny_model(arch)[0]
    return [m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name != "lm_head"]


@pytest.mark.parametrize("kind", TYPES)
def test_each_type_trains_exactly_its_own_tensors_and_the_loss_falls(kind):
    bb, method, cfg = peft(kind)
    trainable = set(trainable_parameters(bb.model))
    assert trainable and trainable == {n for n, _ in bb.model.named_parameters() if method.adds(n)}
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    first, last = train_steps(bb, 15, 1e-2)
    changed = {n for n, p in bb.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert last < first, (first, last)


@pytest.mark.parametrize("kind", TYPES)
def test_save_load_reproduces_the_logits_in_peftlab_and_in_plain_peft(kind, tmp_path):
    assert save_load_max_diff("tiny-llama", "peft", tmp_path / "a", type=kind, **TYPES[kind]) <= 1e-5
    assert plain_peft_max_diff("tiny-llama", "peft", tmp_path / "b", type=kind, **TYPES[kind]) <= 1e-5


@pytest.mark.parametrize(
    "kind,per_linear",
    [
        ("LOHA", lambda m, o: 2 * o["r"] * (m.in_features + m.out_features)),  # hada_w1_a/b, hada_w2_a/b
        ("VERA", lambda m, o: m.out_features + o["r"]),  # vera_lambda_b and vera_lambda_d (A, B frozen, shared)
        ("FOURIERFT", lambda m, o: o["n_frequency"]),  # the learned spectral coefficients
    ],
)
def test_trainable_count_matches_the_papers_formula(kind, per_linear):
    bb, _, _ = peft(kind)
    expected = sum(per_linear(m, TYPES[kind]) for m in linears("tiny-llama"))
    assert count_parameters(bb.model)[0] == expected


def test_ln_tuning_trains_a_copy_of_every_norm():
    bb, _, _ = peft("LN_TUNING")
    base = tiny_model("tiny-llama")[0]
    norms = sum(p.numel() for n, p in base.named_parameters() if "norm" in n)
    assert count_parameters(bb.model)[0] == norms


@pytest.mark.parametrize("kind", TYPES)
def test_flop_count_equals_flop_counter_mode(kind):
    """Tuners that build their update inside forward (LoHa's delta weight, BOFT's rotation) are
    measured once per layer (flops_tuners.py): the count matches torch's counter on new shapes."""
    bb, _, _ = peft(kind)
    bb.model.set_attn_implementation("eager")  # as in tests/test_flops.py: SDPA is invisible to the counter
    count = StepFlops(bb.model, bb.is_seq2seq)
    for n, max_words in ((4, 6), (3, 14)):
        batch = batch_of(bb, n, max_words)
        counted, truth = count(batch), measured(bb, batch)
        print(f"{kind}: counted {counted:,d} measured {truth:,d}, error {100 * (counted - truth) / truth:+.2f}%")
        # P-tuning: the prompt encoder's rows are not the input's (0.2% on this model), like prompt tuning.
        assert abs(counted - truth) / truth < (0.01 if kind == "P_TUNING" else 1e-6), (counted, truth)


def test_options_are_checked_against_peft_config_fields_with_suggestions():
    def error(**options) -> str:
        with pytest.raises(PeftlabError) as e:
            method_options(MethodConfig(name="peft", **options))
        return str(e.value)

    assert "did you mean 'LOHA'" in error(type="loah")
    message = error(type="LOHA", rank=4)
    assert "'rank' is not an option of peft's LoHaConfig" in message and "(did you mean 'r'?)" not in message
    assert "allowed: alpha" in message
    assert "peftlab's to set" in error(type="LOHA", task_type="SEQ_CLS")
    assert "use method.name: lora" in error(type="lora")
    assert "decoder cannot place" in error(type="MULTITASK_PROMPT_TUNING")
    assert "total_step" in error(type="ADALORA")  # AdaLoRA runs (test_adalora.py), given its schedule length
    assert "refuses these options" in error(type="OFT", r=0, oft_block_size=0)
    ok = method_options(MethodConfig(name="peft", type="vera", r=8))
    assert ok.type == "VERA" and ok.tuner_options() == {"r": 8}
    assert get_method("peft").label({"name": "peft", "type": "LOKR"}) == "lokr"


def test_hybrids_take_a_peft_type_at_its_own_hook():
    # P-tuning is prompt learning: it goes last, beside LoRA's Linear wraps.
    bb, method, cfg = setup("tiny-llama", "hybrid", methods=[{"name": "lora", "rank": 4}, {"name": "peft", **P_TUNING}])
    first, last = train_steps(bb, 10, 1e-2)
    assert last < first
    assert method.label({"methods": [{"name": "lora"}, {"name": "peft", "type": "P_TUNING"}]}) == "lora+p_tuning"
    # LoHa wraps Linear layers: it and LoRA would both hook into them.
    with pytest.raises(PeftlabError, match="both hook into linear_wrap"):
        method_options(MethodConfig(name="hybrid", methods=[{"name": "lora"}, {"name": "peft", "type": "LOHA"}]))
    bb, _, _ = setup("tiny-llama", "hybrid", methods=[{"name": "series_adapter"}, {"name": "peft", **LOHA}])
    assert any(".series_adapter." in n for n in trainable_parameters(bb.model))
    assert any(".hada_w1_a." in n for n in trainable_parameters(bb.model))


P_TUNING = {"type": "P_TUNING", **TYPES["P_TUNING"]}
LOHA = {"type": "LOHA", **TYPES["LOHA"]}


def test_peftlab_methods_lists_the_types_this_peft_offers():
    with console.capture() as captured:
        assert cli.main(["methods"]) == 0
    out = captured.get()
    assert "LOHA" in out and "P_TUNING" in out and "VERA" in out


def test_the_default_lr_depends_on_the_type_where_measured():
    method = get_method("peft")
    assert method.lr(method.config_cls(type="VERA", r=8)) == 1e-2  # scaling vectors only: 1e-3 barely moves them
    assert method.lr(method.config_cls(type="LOHA")) == method.default_lr == 1e-3
