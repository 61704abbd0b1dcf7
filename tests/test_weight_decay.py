"""train.weight_decay shrinks weight matrices, never soft prompts, prefixes, IA3 scaling vectors,
biases or norm weights: decaying those pulls a soft prompt towards zero, off the embedding manifold,
and an IA3 vector (which starts at one) towards switching its activations off."""

import pytest
import torch

from peftlab.methods import get_method, method_options
from peftlab.models.tiny import tiny_model
from peftlab.training.train import build_optimizer
from tests.test_train import make_config

LORA = {"name": "lora", "rank": 2}


def decays(tmp_path, copy_task, method: dict, arch: str = "tiny-llama", weight_decay: float = 0.1):
    """{parameter name: its group's weight decay} and the optimizer, as train.py builds it."""
    cfg = make_config(tmp_path, copy_task, arch, method=method, weight_decay=weight_decay)
    m, options = get_method(cfg.method.name), method_options(cfg.method)
    model = m.apply(tiny_model(arch)[0], options)
    opt = build_optimizer(cfg, m, options, model, 1e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [names[id(p)] for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    return {names[id(p)]: g["weight_decay"] for g in opt.param_groups for p in g["params"]}, opt


@pytest.mark.parametrize(
    "method",
    [
        {"name": "prompt_tuning", "num_virtual_tokens": 3},
        {"name": "prefix_tuning", "num_virtual_tokens": 3},
        {"name": "ia3"},
    ],
)
def test_soft_prompts_prefixes_and_ia3_vectors_do_not_decay(tmp_path, copy_task, method):
    wd, _ = decays(tmp_path, copy_task, method)
    assert wd and set(wd.values()) == {0.0}, wd


def test_prefix_projection_mlp_weights_decay_its_embedding_and_biases_do_not(tmp_path, copy_task):
    wd, _ = decays(tmp_path, copy_task, {"name": "prefix_tuning", "num_virtual_tokens": 3, "prefix_projection": True})
    assert {n: d for n, d in wd.items() if d} == {
        "prompt_encoder.default.transform.0.weight": 0.1,
        "prompt_encoder.default.transform.2.weight": 0.1,
    }


def test_full_fine_tuning_decays_matrices_not_biases_or_norms(tmp_path, copy_task):
    wd, _ = decays(tmp_path, copy_task, {"name": "full"}, arch="tiny-gpt-neo")
    assert all(d == 0.0 for n, d in wd.items() if n.endswith(".bias") or "ln_" in n), wd
    assert wd["transformer.h.0.mlp.c_fc.weight"] == 0.1


def test_hybrid_groups_keep_their_lr_and_split_by_decay(tmp_path, copy_task):
    method = {"name": "hybrid", "methods": [LORA, {"name": "prompt_tuning", "num_virtual_tokens": 3}]}
    wd, opt = decays(tmp_path, copy_task, method)
    assert all((d == 0.1) == ("lora_" in n) for n, d in wd.items()), wd
    lrs = {(g["name"], g["weight_decay"]): g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({("lora", 0.1): 1e-3 / 3e-2 * 1e-3, ("prompt_tuning", 0.0): 1e-3})


def test_without_weight_decay_the_groups_are_unchanged(tmp_path, copy_task):
    _, opt = decays(tmp_path, copy_task, LORA, weight_decay=0.0)
    assert len(opt.param_groups) == 1


def test_a_decayed_step_leaves_the_soft_prompt_alone_without_gradient(tmp_path, copy_task):
    """With a zero gradient, AdamW moves a parameter only by its decay."""
    wd, opt = decays(tmp_path, copy_task, {"name": "hybrid", "methods": [LORA, {"name": "prompt_tuning"}]})
    params = [p for g in opt.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    moved = {n for n, p, b in zip(wd, params, before) if not torch.equal(p, b)}
    assert moved == {n for n, d in wd.items() if d and not n.endswith("lora_B.default.weight")}
