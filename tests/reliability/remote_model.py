"""A tiny local model folder that ships its own Python (auto_map in config.json), as a hub model with
custom code does. Its code appends a line to a marker file whenever it runs (on import and at every
model construction), so a test can tell whether peftlab ran it."""

from __future__ import annotations

import json
from pathlib import Path

from peftlab.models.tiny import tiny_model

CODE = """
from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM

MARKER = Path({marker!r})
with MARKER.open("a") as f:
    f.write("imported\\n")


class MarkerConfig(LlamaConfig):
    model_type = "peftlab-marker"


class MarkerForCausalLM(LlamaForCausalLM):
    config_class = MarkerConfig

    def __init__(self, config):
        with MARKER.open("a") as f:
            f.write("constructed\\n")
        super().__init__(config)
"""


def remote_code_model(folder: Path, marker: Path) -> Path:
    """Write the folder (safetensors weights, tokenizer, config.json pointing at modeling_marker.py).
    The folder's name becomes a Python module name in transformers' module cache: keep it unique."""
    model, tok = tiny_model("tiny-llama")
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    (folder / "modeling_marker.py").write_text(CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "peftlab-marker"
    config["architectures"] = ["MarkerForCausalLM"]
    config["auto_map"] = {
        "AutoConfig": "modeling_marker.MarkerConfig",
        "AutoModelForCausalLM": "modeling_marker.MarkerForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
