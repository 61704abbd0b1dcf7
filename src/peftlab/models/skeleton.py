"""A model's structure without its weights, for questions asked before anything loads or is written
(does this method apply to this model?): the modules and parameter names, built on the meta device."""

from __future__ import annotations

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.models.bundled import BUNDLED, cache_root, gguf_path
from peftlab.models.kind import kind_of_config
from peftlab.models.tiny import TINY_MODELS, tiny_model


def model_skeleton(cfg) -> nn.Module | None:
    """The modules and parameter names of the model that ``cfg`` (a config's model section) names,
    without its weights (built on the meta device), for ``Method.applies_to``; None when its config
    cannot be read here (offline and not cached) or would run the model's own code: then the method's
    own apply refuses a misfit, after the model loaded."""
    from transformers import AutoConfig

    if cfg.name in TINY_MODELS:  # built in code, in milliseconds
        return tiny_model(cfg.name)[0]
    if cfg.trust_remote_code:
        return None
    try:
        cached = cache_root() / "models" / cfg.name  # a bundled model converted once (bundled.py)
        if cfg.name in BUNDLED and not (cached / "config.json").is_file():  # not yet: the GGUF file's header
            mcfg = AutoConfig.from_pretrained(gguf_path(cfg.name).parent, gguf_file=gguf_path(cfg.name).name)
        else:
            mcfg = AutoConfig.from_pretrained(cached if cfg.name in BUNDLED else cfg.name)
    except (OSError, ValueError, PeftlabError):
        return None
    with torch.device("meta"):
        return kind_of_config(mcfg).auto_class.from_config(mcfg)
