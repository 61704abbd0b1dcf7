"""Hybrids (He et al., 2022): methods hooking into different places, trained together."""

import csv
import json

import pytest
import torch

from peftlab.config import MethodConfig
from peftlab.errors import PeftlabError
from peftlab.evaluation.evaluate import eval_run
from peftlab.methods import count_parameters, get_method, method_options, trainable_parameters
from peftlab.methods.hybrid import default_lr, param_groups
from peftlab.models.tiny import tiny_model
from peftlab.training.train import train
from tests.conftest import ARCHS
from tests.methods.harness import changed_parameters, logits_unchanged_by_apply, save_load_max_diff, setup, train_steps
from tests.test_train import make_config

PA = {"name": "parallel_adapter"}
LORA = {"name": "lora", "rank": 4, "dropout": 0.0}
LORA_PA = [LORA, PA]
# The hybrid of reference project 000: a soft prompt + LoRA.
LORA_PROMPT = [LORA, {"name": "prompt_tuning"}]
# He et al.'s MAM adapter: prefix tuning in attention + a scaled parallel adapter beside the FFN.
MAM = [{"name": "prefix_tuning"}, PA]


def hybrid_options(methods):
    return method_options(MethodConfig(name="hybrid", methods=methods))


INVALID = [
    ([{"name": "lora"}, {"name": "ia3"}], "'lora' and 'ia3' both hook into linear_wrap"),
    (
        [{"name": "lora"}, {"name": "full"}],
        "'full' (hook parameter_subset) trains existing weights and cannot be combined with 'lora'",
    ),
    ([{"name": "none"}, PA], "'none' (hook none) trains nothing and cannot be combined with 'parallel_adapter'"),
    ([{"name": "lora"}, {"name": "lora", "rank": 4}], "'lora' is listed twice"),
    (
        [{"name": "prompt_tuning"}, {"name": "prefix_tuning"}],
        "'prompt_tuning' and 'prefix_tuning' are both prompt-learning",
    ),
    ([{"name": "lora"}, {"name": "hybrid"}], "method.methods[1].name: a hybrid cannot contain a hybrid"),
    (
        [{"name": "lora"}, {"name": "paralel_adapter"}],
        "method.methods[1].name: unknown method 'paralel_adapter' (did you mean 'parallel_adapter'?)",
    ),
    (
        [{"name": "lora"}, {"name": "parallel_adapter", "reduction": 4}],
        "method.methods[1].reduction: unknown option (did you mean 'reduction_factor'?)",
    ),
    ([{"name": "lora", "rank": 0}, PA], "method.methods[0].rank: Input should be greater than or equal to 1"),
    ([{"rank": 4}, PA], "method.methods[0]: each component is a mapping {name: <method>"),
]


@pytest.mark.parametrize("methods,message", INVALID)
def test_invalid_hybrids_are_refused_with_a_clear_message(methods, message):
    with pytest.raises(PeftlabError) as e:
        hybrid_options(methods)
    assert message in str(e.value)


def test_a_hybrid_needs_two_methods():
    with pytest.raises(PeftlabError, match="method.methods: List should have at least 2 items"):
        hybrid_options([{"name": "lora"}])


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_plus_parallel_adapter_trains_only_their_parameters(arch):
    assert logits_unchanged_by_apply(arch, "hybrid", methods=LORA_PA)  # both start at zero
    bb, _, _ = setup(arch, "hybrid", methods=LORA_PA)
    lora_only, _, _ = setup(arch, "lora", rank=4)
    pa_only, _, _ = setup(arch, "parallel_adapter")
    assert count_parameters(bb.model)[0] == count_parameters(lora_only.model)[0] + count_parameters(pa_only.model)[0]
    names = {n for n, _ in bb.model.named_parameters()}
    assert not any("lora_" in n for n in names if ".parallel_adapter." in n)  # LoRA did not wrap the adapters
    # LoRA is injected first whatever the listed order, so the parameter names do not depend on it
    reversed_bb, _, _ = setup(arch, "hybrid", methods=LORA_PA[::-1])
    assert {n for n, _ in reversed_bb.model.named_parameters()} == names
    changed = changed_parameters(bb, 1e-2)
    assert changed and all("lora_" in n or ".parallel_adapter." in n for n in changed), sorted(changed)[:5]
    # both zero-initialised outputs moved on the first step
    assert {n for n in names if "lora_B" in n or ".parallel_adapter.up." in n} <= changed


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    "methods,lr", [(LORA_PA, 1e-2), (LORA_PROMPT, 1e-2), (MAM, 3e-2)], ids=["lora+pa", "lora+prompt", "mam"]
)
def test_hybrid_loss_halves_on_a_fixed_batch(arch, methods, lr):
    bb, _, _ = setup(arch, "hybrid", methods=methods)
    first, last = train_steps(bb, 50, lr)
    assert last < first / 2, (first, last)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("methods", [LORA_PA, LORA_PROMPT, MAM], ids=["lora+pa", "lora+prompt", "mam"])
def test_save_then_load_onto_fresh_base_reproduces_logits(arch, methods, tmp_path):
    assert save_load_max_diff(arch, "hybrid", tmp_path, lr=1e-2, methods=methods) <= 1e-5
    meta = json.loads((tmp_path / "adapter" / "peftlab_method.json").read_text())
    assert meta["method"] == "hybrid" and [m["name"] for m in meta["methods"]] == [m["name"] for m in methods]
    assert set(meta["owners"].values()) == {m["name"] for m in methods}


def test_load_refuses_tensors_of_another_hybrid(tmp_path):
    bb, method, _ = setup("tiny-llama", "hybrid", methods=LORA_PA)
    method.save(bb.model, tmp_path)
    other = method.config_cls(methods=[{"name": "lora", "rank": 4, "target_modules": ["q_proj"]}, PA])
    with pytest.raises(PeftlabError, match="saved tensors do not match"):
        method.load(tiny_model("tiny-llama")[0], tmp_path, other)


def test_param_groups_give_each_component_its_own_lr():
    bb, _, cfg = setup("tiny-gpt-neo", "hybrid", methods=LORA_PROMPT)
    defaults = [get_method(n).default_lr for n in ("lora", "prompt_tuning")]
    assert default_lr(cfg) == max(defaults)
    groups = param_groups(bb.model, cfg, base_lr=default_lr(cfg) / 2)
    assert [g["name"] for g in groups] == ["lora", "prompt_tuning"]
    assert [g["lr"] for g in groups] == pytest.approx([d / 2 for d in defaults])
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in trainable_parameters(bb.model).values())
    owners = bb.model.peftlab_hybrid["owners"]
    assert all(("lora_" in n) == (o == "lora") for n, o in owners.items())
    torch.optim.AdamW(groups)  # a valid optimizer specification


@pytest.mark.parametrize(
    "arch,methods",
    [
        ("tiny-t5", LORA_PROMPT),
        ("tiny-llama", [{"name": "prefix_tuning"}, {"name": "parallel_adapter", "target": "both"}]),
    ],
)
def test_a_hybrid_run_trains_generates_and_reloads(tmp_path, copy_task, arch, methods):
    run_dir = train(
        make_config(tmp_path, copy_task, arch, method={"name": "hybrid", "methods": methods}, max_steps=4, eval_every=2)
    )
    assert sorted(p.name for p in (run_dir / "adapter").iterdir()) == ["hybrid.safetensors", "peftlab_method.json"]
    rows = list(csv.DictReader((run_dir / "predictions.csv").open()))
    eval_run(run_dir, "test")  # fresh base + saved hybrid: the same generations
    again = list(csv.DictReader((run_dir / "predictions_test.csv").open()))
    assert [r["prediction"] for r in again] == [r["prediction"] for r in rows]
