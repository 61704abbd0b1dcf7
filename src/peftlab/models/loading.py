"""Resolve a model name to (model, tokenizer) and wrap it in a Backbone.

Order: tiny test models, bundled models, a local directory, then a Hugging Face hub id.
Causal vs seq2seq is read from the model config (``is_encoder_decoder``), never guessed from a name.
Weights load from safetensors only (pickle files can run code).
"""

from __future__ import annotations

from pathlib import Path

import torch

from peftlab.config import ModelConfig
from peftlab.errors import PeftlabError
from peftlab.models.backbone import Backbone
from peftlab.models.bundled import BUNDLED, ensure_cached
from peftlab.models.tiny import TINY_MODELS, tiny_model


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # bf16 matmuls are ~50x slower than fp32 on CPUs without AMX; bf16 is the GPU default.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def refuse_pickle(folder: Path, what: str, allow: bool) -> bool:
    """True when ``folder`` must be loaded from pickle files (allowed); PeftlabError when not allowed.

    Unpickling runs whatever code the file names, so a downloaded model or adapter that exists only
    as .bin/.pt is refused unless the user vouches for it (--allow-unsafe-pickle)."""
    folder = Path(folder)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return False
    pickles = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES)
    if pickles and not allow:
        raise PeftlabError(
            f"{folder}: the {what} is stored only as pickle ({', '.join(pickles[:3])}), which can run "
            "code when loaded. Convert it to safetensors, or pass --allow-unsafe-pickle if you trust "
            "where it came from"
        )
    return bool(pickles)


def load_pretrained(cfg: ModelConfig, log=print, allow_unsafe_pickle: bool = False):
    """(model, tokenizer, source) for cfg.name; raises PeftlabError with a fix when it cannot."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if cfg.name in TINY_MODELS:
        model, tok = tiny_model(cfg.name)
        return model, tok, cfg.name
    source = str(ensure_cached(cfg.name, log=log)) if cfg.name in BUNDLED else cfg.name
    local = Path(source).is_dir()
    if not local and (source.startswith((".", "/", "~")) or source.count("/") > 1):
        raise PeftlabError(
            f"model.name: '{cfg.name}' is neither a bundled model ({', '.join(BUNDLED)}), "
            f"a tiny test model ({', '.join(TINY_MODELS)}), an existing folder, nor a hub id"
        )
    if local:
        refuse_pickle(Path(source), "model", allow_unsafe_pickle)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a 0.1 s load needs no bar; peftlab shows its own progress
    try:
        mcfg = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        auto = AutoModelForSeq2SeqLM if getattr(mcfg, "is_encoder_decoder", False) else AutoModelForCausalLM
        model = auto.from_pretrained(
            # Safetensors only, unless the user allowed pickle for this model (then whatever it has).
            source,
            config=mcfg,
            dtype=torch.float32,
            use_safetensors=None if allow_unsafe_pickle else True,
            trust_remote_code=cfg.trust_remote_code,
        )
    except (OSError, ValueError) as e:
        hint = (
            "the folder has no loadable safetensors model"
            if local
            else "it is not cached locally and the hub cannot be reached (offline?); "
            f"use a local folder or a bundled model ({', '.join(BUNDLED)})"
        )
        raise PeftlabError(
            f"model.name: cannot load '{cfg.name}': {hint}.\n  detail: {str(e).splitlines()[0]}"
        ) from None
    finally:
        hf_logging.enable_progress_bar()
    return model, tok, source


def load_backbone(
    cfg: ModelConfig, device: torch.device | None = None, log=print, allow_unsafe_pickle: bool = False
) -> Backbone:
    device = device or default_device()
    model, tok, source = load_pretrained(cfg, log=log, allow_unsafe_pickle=allow_unsafe_pickle)
    model = model.to(device=device, dtype=resolve_dtype(cfg.dtype, device))
    return Backbone(model=model, tokenizer=tok, source=source, use_chat_template=cfg.chat_template)
