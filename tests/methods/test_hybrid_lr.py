"""A hybrid trains each component at that component's own lr for its options (Method.lr), not at
the method's bare default_lr: prefix tuning with prefix_projection trains at 3e-3, not 1e-2."""

import pytest

from peftlab.methods import get_method
from peftlab.methods.hybrid import default_lr, param_groups
from tests.methods.harness import setup

PREFIX_MLP = {"name": "prefix_tuning", "num_virtual_tokens": 2, "prefix_projection": True}
LORA = {"name": "lora", "rank": 2, "dropout": 0.0}


def test_components_train_at_the_lr_of_their_options():
    prefix = get_method("prefix_tuning")
    expected = prefix.lr(prefix.config_cls(prefix_projection=True))
    assert expected == pytest.approx(3e-3)  # not prefix.default_lr (1e-2)
    bb, _, cfg = setup("tiny-llama", "hybrid", methods=[PREFIX_MLP, LORA])
    assert default_lr(cfg) == pytest.approx(expected)  # the largest component lr: 3e-3 vs LoRA's 1e-3
    assert get_method("hybrid").lr(cfg) == pytest.approx(expected)
    groups = {g["name"]: g["lr"] for g in param_groups(bb.model, cfg, base_lr=default_lr(cfg))}
    assert groups == pytest.approx({"prefix_tuning": 3e-3, "lora": get_method("lora").default_lr})


def test_train_lr_keeps_each_component_ratio_to_its_own_lr():
    bb, _, cfg = setup("tiny-llama", "hybrid", methods=[PREFIX_MLP, LORA])
    groups = {g["name"]: g["lr"] for g in param_groups(bb.model, cfg, base_lr=6e-3)}
    assert groups == pytest.approx({"prefix_tuning": 6e-3, "lora": 2e-3})
