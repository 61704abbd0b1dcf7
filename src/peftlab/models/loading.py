"""Resolve a model name to (model, tokenizer) and wrap it in a Backbone.

Order: tiny test models, bundled models, a local directory, then a Hugging Face hub id.
Causal vs seq2seq is read from the model config (``kind_of_config`` in models/kind.py), never guessed
from a name.
Weights load from safetensors only (pickle files can run code), and a model's own Python (remote code)
runs only when the config asks for it and the command line allows it (``remote_code_allowed``).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import torch

from peftlab.config import ModelConfig
from peftlab.errors import PeftlabError
from peftlab.measure.precision import run_dtypes
from peftlab.models.backbone import Backbone
from peftlab.models.bundled import BUNDLED, ensure_cached
from peftlab.models.kind import kind_of_config
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


# Whether this command may run a model's own Python. A config only asks (model.trust_remote_code); the
# permission comes from the command line (--trust-remote-code), because a YAML file is often someone
# else's and one line of it must not run the code of a model folder. A context variable rather than a
# parameter, so that every path that loads a model (train, eval, the lr search, inspect, merge) is gated
# at this one place without each caller passing it on.
_REMOTE_CODE_ALLOWED: ContextVar[bool] = ContextVar("peftlab_remote_code_allowed", default=False)
REMOTE_CODE_FLAG = "--trust-remote-code"


@contextmanager
def remote_code_allowed(allowed: bool = True) -> Iterator[None]:
    """Within the block, a config's model.trust_remote_code: true is obeyed (the CLI's --trust-remote-code)."""
    token = _REMOTE_CODE_ALLOWED.set(allowed)
    try:
        yield
    finally:
        _REMOTE_CODE_ALLOWED.reset(token)


def check_remote_code(cfg: ModelConfig, source: str | Path | None = None) -> None:
    """PeftlabError when the config asks for remote code and the command line did not allow it.
    Called before anything is written or loaded; ``source``: the file the config came from."""
    if cfg.trust_remote_code and not _REMOTE_CODE_ALLOWED.get():
        where = f"{source}: " if source else ""
        raise PeftlabError(
            f"{where}model.trust_remote_code: true runs Python shipped in the model folder ({cfg.name}); "
            f"pass {REMOTE_CODE_FLAG} to allow it (only for a model whose code you have read or trust)"
        )


def refuse_unasked_remote_code(folder: Path, cfg: ModelConfig) -> None:
    """A local model folder whose config.json or tokenizer_config.json maps classes to its own .py files
    (auto_map) cannot load without running them: say so, and how to allow it, instead of transformers'
    "cannot load"."""
    if cfg.trust_remote_code:
        return
    files: set[str] = set()
    for name in ("config.json", "tokenizer_config.json"):
        try:
            auto_map = json.loads((folder / name).read_text(encoding="utf-8")).get("auto_map") or {}
            values = auto_map.values() if isinstance(auto_map, dict) else auto_map
        except (OSError, ValueError, AttributeError):
            continue  # unreadable: transformers' own error says what is wrong
        for v in values:
            for ref in v if isinstance(v, list) else [v]:
                if isinstance(ref, str):
                    files.add(ref.split("--")[-1].split(".")[0] + ".py")
    if files:
        raise PeftlabError(
            f"model.name: {folder} ships its own Python ({', '.join(sorted(files))}), which peftlab does not "
            f"run unless the config sets model.trust_remote_code: true and the command line passes "
            f"{REMOTE_CODE_FLAG} (only for code you have read or trust)"
        )


def load_pretrained(
    cfg: ModelConfig,
    log=print,
    allow_unsafe_pickle: bool = False,
    quantization: object | None = None,
    device: torch.device | None = None,
):
    """(model, tokenizer, source) for cfg.name; raises PeftlabError with a fix when it cannot.

    ``quantization``: a transformers quantization config (QLoRA's, ``Method.quantization``). The model
    then loads tensor by tensor straight into it on ``device``, never whole in full precision; a model
    built in code (the tiny test models) loads as it is, and the method quantizes it."""
    from transformers import AutoConfig, AutoTokenizer

    check_remote_code(cfg)  # before anything is read: the one place every model load passes
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
        refuse_unasked_remote_code(Path(source), cfg)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a 0.1 s load needs no bar; peftlab shows its own progress
    try:
        mcfg = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        auto = kind_of_config(mcfg).auto_class
        quantized = {} if quantization is None else {"quantization_config": quantization, "device_map": device}
        model = auto.from_pretrained(
            # Safetensors only, unless the user allowed pickle for this model (then whatever it has).
            source,
            config=mcfg,
            dtype=torch.float32,
            use_safetensors=None if allow_unsafe_pickle else True,
            trust_remote_code=cfg.trust_remote_code,
            **quantized,
        )
    except (OSError, ValueError) as e:
        raise _load_error(cfg, local, e) from None
    finally:
        hf_logging.enable_progress_bar()
    return model, tok, source


def _load_error(cfg: ModelConfig, local: bool, e: Exception) -> PeftlabError:
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "custom code" in detail:  # transformers refused a hub model's own Python (trust_remote_code off)
        hint = (
            f"it ships its own Python, which peftlab runs only when the config sets model.trust_remote_code: "
            f"true and the command line passes {REMOTE_CODE_FLAG} (only for code you have read or trust)"
        )
    elif local:
        hint = "the folder has no loadable safetensors model"
    else:
        hint = (
            "it is not cached locally and the hub cannot be reached (offline?); "
            f"use a local folder or a bundled model ({', '.join(BUNDLED)})"
        )
    return PeftlabError(f"model.name: cannot load '{cfg.name}': {hint}.\n  detail: {detail}")


def load_backbone(
    cfg: ModelConfig,
    device: torch.device | None = None,
    log=print,
    allow_unsafe_pickle: bool = False,
    dtype: torch.dtype | None = None,
    quantization: object | None = None,
) -> Backbone:
    """The model and tokenizer on ``device``, in ``dtype`` (default: model.dtype resolved for the device);
    ``quantization``: see load_pretrained."""
    device = device or default_device()
    dtype = dtype or resolve_dtype(cfg.dtype, device)
    model, tok, source = load_pretrained(
        cfg, log=log, allow_unsafe_pickle=allow_unsafe_pickle, quantization=quantization, device=device
    )
    if getattr(model, "hf_quantizer", None) is None:
        model = model.to(device=device, dtype=dtype)
    else:  # loaded quantized onto device; transformers refuses to cast such a model
        _hold_unquantized(model, dtype, device)
    return Backbone(model=model, tokenizer=tok, source=source, use_chat_template=cfg.chat_template)


def _hold_unquantized(model: torch.nn.Module, dtype: torch.dtype, device: torch.device) -> None:
    """The tensors a quantized load left in full precision (embeddings, norms), in ``dtype`` and in the
    process's own memory.

    Why the copy on CPU: they are views of the memory-mapped checkpoint file, which then stays mapped
    whole; every tensor of it was read to be quantized, so its pages (the full-precision model, 0.4 GB
    for SmolLM2-135M) count in the resident set, the CPU's peak-memory column, though the 4-bit model
    never reads them again. With no view left, the mapping closes; glibc keeps the heap the loading
    freed unless asked to return it (malloc_trim), and would count it too."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(dtype, copy=device.type == "cpu")
    if device.type == "cpu":
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):  # glibc only (Linux); elsewhere nothing to do
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def load_as_trained(
    cfg: ModelConfig,
    precision: str,
    device: torch.device | None = None,
    log=print,
    allow_unsafe_pickle: bool = False,
    quantization: object | None = None,
) -> Backbone:
    """The backbone as a run holds it: weights in ``run_dtypes``' dtype, ``compute_dtype`` its autocast;
    ``quantization``: the method's (load_pretrained), so QLoRA's base never exists in full precision.
    Training (run_model.py) and every re-load of a finished run (evaluate.load_run: eval, generate,
    beam re-runs, merge, attribute) load through here, so the two cannot drift apart.

    Loaded straight into that dtype: training on a GPU once cast fp32 -> bf16 -> fp32, rounding its
    fp32 masters, and re-evaluation skipped the cast back and held a bf16 model."""
    device = device or default_device()
    weights, compute = run_dtypes(cfg.dtype, precision, device)
    backbone = load_backbone(
        cfg, device=device, log=log, allow_unsafe_pickle=allow_unsafe_pickle, dtype=weights, quantization=quantization
    )
    backbone.compute_dtype = compute
    return backbone
