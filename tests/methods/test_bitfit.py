"""BitFit (Ben Zaken et al., 2022): only the bias terms train, on models that have them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from peftlab.cli import main
from peftlab.config import MethodConfig, load_config
from peftlab.errors import PeftlabError
from peftlab.measure.flops import StepFlops
from peftlab.methods import count_parameters, get_method, method_options, refuse_misfit
from peftlab.methods.bitfit import WEIGHTS, bias_names
from peftlab.models.causal import CAUSAL
from peftlab.models.tiny import tiny_model
from peftlab.training.train import train
from tests.conftest import fixed_batch
from tests.methods import test_every_method
from tests.methods.harness import changed_parameters, save_load_max_diff, setup, train_steps

REFUSED = "method bitfit: the model has no bias terms ({}); BitFit needs a model with biases such as GPT-Neo"
# tiny-gpt-neo's bias terms, per block: ln_1 (32), the attention's out_proj (32), ln_2 (32), the
# feed-forward's c_fc (64) and c_proj (32); and ln_f (32) after the 2 blocks. q, k, v have none.
NEO_BIASES = 2 * (32 + 32 + 32 + 64 + 32) + 32


def test_the_loss_falls_on_a_fixed_batch():
    bb, method, cfg = setup("tiny-gpt-neo", "bitfit")
    first, last = train_steps(bb, 10, method.lr(cfg))
    assert last < first - 0.05


def test_only_the_biases_train_and_change():
    bb, method, cfg = setup("tiny-gpt-neo", "bitfit")
    biases = set(bias_names(bb.model))
    assert {n for n, p in bb.model.named_parameters() if p.requires_grad} == biases
    assert changed_parameters(bb, method.lr(cfg)) == biases
    assert count_parameters(bb.model)[0] == NEO_BIASES


def test_bias_pattern_trains_only_the_matching_biases():
    bb, method, cfg = setup("tiny-gpt-neo", "bitfit", bias_pattern="*.mlp.*")
    expected = {f"transformer.h.{i}.mlp.{layer}.bias" for i in (0, 1) for layer in ("c_fc", "c_proj")}
    assert changed_parameters(bb, method.lr(cfg)) == expected


def test_a_pattern_matching_no_bias_is_refused_naming_some():
    model, _ = tiny_model("tiny-gpt-neo")
    method = get_method("bitfit")
    with pytest.raises(PeftlabError, match=r"method.bias_pattern: '\*q_proj\*' matches none of the model's 11 bias"):
        method.apply(model, method.config_cls(bias_pattern="*q_proj*"))
    assert all(p.requires_grad for p in model.parameters())  # refused before anything was frozen


def test_save_then_load_reproduces_the_logits_from_safetensors_and_json(tmp_path):
    assert save_load_max_diff("tiny-gpt-neo", "bitfit", tmp_path, lr=1e-2) <= 1e-6
    saved = load_file(str(tmp_path / "adapter" / WEIGHTS))
    meta = json.loads((tmp_path / "adapter" / "peftlab_method.json").read_text())
    assert meta == {"method": "bitfit", "format": 1, "tensors": sorted(saved, key=meta["tensors"].index)}
    assert sum(t.numel() for t in saved.values()) == NEO_BIASES


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-t5"])
def test_models_without_biases_are_refused_with_the_reason(arch):
    model, _ = tiny_model(arch)
    method = get_method("bitfit")
    with pytest.raises(PeftlabError, match=f"^{REFUSED.format(arch)}$".replace("(", r"\(").replace(")", r"\)")):
        refuse_misfit(method, model, arch)
    with pytest.raises(PeftlabError, match="the model has no bias terms"):
        method.apply(model, method.config_cls())  # the last guard, for a caller that did not ask first


def _config(tmp_path, copy_task, arch: str) -> str:
    cfg = {
        "name": "bitfit",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": arch},
        "method": {"name": "bitfit"},
        "task": copy_task,
        "train": {"max_steps": 2, "batch_size": 4},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / "cfg.yaml")


def test_check_and_train_refuse_a_model_without_biases_before_writing(tmp_path, copy_task, capsys):
    path = _config(tmp_path, copy_task, "tiny-llama")
    assert main(["check", path]) == 2
    assert REFUSED.format("tiny-llama") in capsys.readouterr().err
    assert main(["train", path]) == 2
    assert REFUSED.format("tiny-llama") in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    # train() called from code (compare, the lr search, the demo) refuses as early: no lock, no config.yaml
    with pytest.raises(PeftlabError, match=re.escape(REFUSED.format("tiny-llama"))):
        train(load_config(path))
    assert not (tmp_path / "runs").exists()


def test_a_run_trains_saves_and_is_evaluated_again_to_the_same_predictions(tmp_path, copy_task):
    run_dir = Path(train(load_config(_config(tmp_path, copy_task, "tiny-gpt-neo"))))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["trainable_params"] == NEO_BIASES
    assert sorted(p.name for p in (run_dir / "adapter").iterdir()) == ["bitfit.safetensors", "peftlab_method.json"]
    assert main(["eval", str(run_dir), "--split", "test", "--overwrite"]) == 0
    again = (run_dir / "predictions_test.csv").read_text().splitlines()
    assert again == (run_dir / "predictions.csv").read_text().splitlines()


def test_check_accepts_a_model_with_biases(tmp_path, copy_task, capsys):
    assert main(["check", _config(tmp_path, copy_task, "tiny-gpt-neo")]) == 0
    assert "valid. bitfit on tiny-gpt-neo" in " ".join(" ".join(capsys.readouterr()).split())


def test_the_every_method_harness_runs_it_where_it_applies():
    assert ("tiny-gpt-neo", "bitfit") in test_every_method.FITS
    assert {arch for arch, name in test_every_method.SKIPPED if name == "bitfit"} == {"tiny-llama", "tiny-t5"}


def test_a_hybrid_refuses_it_as_a_component():
    with pytest.raises(PeftlabError, match="'bitfit' \\(hook parameter_subset\\) trains existing weights"):
        method_options(MethodConfig(name="hybrid", methods=[{"name": "bitfit"}, {"name": "lora"}]))


def test_training_flops_are_flops_py_rules_worked_by_hand():
    """Biases have no weight-gradient matmul (their gradient is a sum over rows): every weight matrix
    is frozen, so flops.py counts the forward and one input-gradient matmul per Linear, and since ln_1's
    bias in the first block trains, every Linear's input requires grad, the head's too."""
    bb, _, _ = setup("tiny-gpt-neo", "bitfit")
    batch = fixed_batch(bb)
    b, s = batch["input_ids"].shape
    h, f, vocab, layers = 32, 64, 384, 2
    linear = b * s * layers * (4 * 2 * h * h + 2 * 2 * h * f)  # q, k, v, out_proj; c_fc, c_proj
    # QK^T and AV, 2*h per query-key pair each, S*S pairs (masked ones too); backward: dQ, dK, dA, dV.
    attention_forward, attention_backward = b * layers * s * s * 2 * 2 * h, b * layers * s * s * 2 * h * 4
    head = 2 * h * vocab * CAUSAL.labelled_tokens(batch)  # at the labelled positions only; tied, frozen
    counted = StepFlops(bb.model, False)
    assert counted.forward(batch) == linear + attention_forward + head
    assert counted.backward(batch) == linear + attention_backward + head
    full, _ = tiny_model("tiny-gpt-neo")
    full = get_method("full").apply(full, get_method("full").config_cls())
    # Full fine-tuning pays the weight gradients on top (the tied head's too); BitFit saves exactly those.
    weight_grads = linear + head
    assert StepFlops(full, False).backward(batch) == counted.backward(batch) + weight_grads
