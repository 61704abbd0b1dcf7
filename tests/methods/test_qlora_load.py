"""QLoRA's base loads straight into NF4 (transformers' quantization config, tensor by tensor): a
full-precision copy never exists. The layers and their bits are those of quantizing the loaded model
layer by layer (the path of models built in code), so the two paths are one method."""

from __future__ import annotations

import json

import bitsandbytes as bnb
import pytest
import torch

from peftlab.cli import main
from peftlab.config import ModelConfig
from peftlab.evaluation.evaluate import load_run
from peftlab.methods import get_method, qlora
from peftlab.models import load_backbone
from peftlab.models.tiny import tiny_model
from peftlab.training.train import train
from tests.conftest import fixed_batch
from tests.methods.harness import logits
from tests.test_train import make_config


def quantized_layers(model) -> dict[str, bnb.nn.Linear4bit]:
    return {
        n.removeprefix("base_model.model.").removesuffix(".base_layer"): m
        for n, m in model.named_modules()
        if isinstance(m, bnb.nn.Linear4bit)
    }


def saved(arch: str, folder) -> str:
    model, tok = tiny_model(arch)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-t5", "tiny-gpt-neo"])
def test_loading_quantized_gives_the_layers_and_bits_of_quantizing_after(arch, tmp_path):
    method = get_method("qlora")
    options = method.config_cls(rank=4)
    quantization = method.quantization(options, torch.float32)
    straight = load_backbone(ModelConfig(name=saved(arch, tmp_path / "m")), quantization=quantization)
    assert straight.model.hf_quantizer is not None  # quantized while loading, not after
    loaded = quantized_layers(straight.model)
    straight.model = method.apply(straight.model, options)
    after = method.apply(tiny_model(arch)[0], options)
    expected = quantized_layers(after)
    assert loaded and set(loaded) == set(expected)  # the head and the kept-in-fp32 layers alike unquantized
    for name, layer in expected.items():
        assert torch.equal(loaded[name].weight.data, layer.weight.data), name
        assert torch.equal(loaded[name].weight.quant_state.absmax, layer.weight.quant_state.absmax), name
    batch = fixed_batch(straight)
    torch.testing.assert_close(logits(straight.model, batch), logits(after, batch), rtol=0, atol=0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_qlora_run_never_holds_the_base_in_full_precision_and_reevaluates_exactly(
    tmp_path, copy_task, monkeypatch, precision
):
    def refuse(*args):
        raise AssertionError("a model loaded from a folder was quantized after a full-precision load")

    monkeypatch.setattr(qlora, "_replace_linears", refuse)  # training and re-evaluation alike
    cfg = make_config(tmp_path, copy_task, method={"name": "qlora", "rank": 4}, max_steps=6, precision=precision)
    cfg.model.name = saved("tiny-llama", tmp_path / "m")
    run_dir = train(cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert main(["eval", str(run_dir), "--split", "test", "--overwrite"]) == 0
    again = json.loads((run_dir / "eval_test.json").read_text())["scores"]
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in summary["test"].items() if k != "seconds"
    }
    _, backbone = load_run(run_dir)
    layers = quantized_layers(backbone.model)
    assert layers and all(not layer.support_avx512bf16_for_cpu for layer in layers.values())
