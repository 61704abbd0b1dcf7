"""Reaching into a transformers model the same way for both kinds: the model under a peft wrapper, its
output head, which prompt learning (if any) wraps it, and one forward with the KV cache whatever the
installed transformers calls the cache.

peftlab's decoders (CausalDecoder in causal.py, Seq2SeqDecoder in seq2seq.py) and option scoring run
through ``Forward``; why peftlab decodes with its own loop is told in decode.py.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from peftlab.errors import PeftlabError


def output_head(model: nn.Module) -> nn.Module | None:
    """The Linear that maps hidden states to vocabulary logits (peft wrappers delegate to the base)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if get is not None else None
    return head if isinstance(head, nn.Module) else None


def core_model(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (LoRA/IA3 layers stay injected in it)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def prompt_learning(model: nn.Module) -> str | None:
    """'prompt' (virtual tokens before the input), 'prefix' (virtual keys/values in the cache) or None."""
    cfg = getattr(model, "active_peft_config", None)
    if cfg is None or not getattr(cfg, "is_prompt_learning", False):
        return None
    kind = {"PROMPT_TUNING": "prompt", "P_TUNING": "prompt", "PREFIX_TUNING": "prefix"}.get(cfg.peft_type.value)
    if kind is None:
        raise PeftlabError(
            f"generation: peft type {cfg.peft_type.value} is not supported by peftlab's decoder "
            "(supported prompt-learning types: PROMPT_TUNING, P_TUNING, PREFIX_TUNING)"
        )
    return kind


class Forward:
    """One forward with the cache, whatever the installed transformers calls it."""

    def __init__(self, core: nn.Module):
        params = inspect.signature(core.forward).parameters
        self.core = core
        # transformers >= 5.24: `cache`; before: `past_key_values` (deprecated, removed in 5.40).
        self.cache_name = "cache" if "cache" in params else "past_key_values"
        self.takes_positions = "position_ids" in params
        self.takes_logits_to_keep = "logits_to_keep" in params

    def __call__(self, cache, **inputs) -> tuple[torch.Tensor, object]:
        """(float logits of the last position, the updated cache)."""
        if cache is not None:
            inputs[self.cache_name] = cache
        if self.takes_logits_to_keep:
            inputs["logits_to_keep"] = 1  # the vocabulary projection of the last position only
        out = self.core(**inputs, use_cache=True, return_dict=True)
        new_cache = out["cache"] if "cache" in out else out["past_key_values"]
        return out.logits[:, -1].float(), new_cache

    def all_logits(self, cache, **inputs) -> torch.Tensor:
        """The logits of every input position on top of ``cache`` (option scoring: models/option_scores.py)."""
        if cache is not None:
            inputs[self.cache_name] = cache
        if not self.takes_positions:
            inputs.pop("position_ids", None)
        return self.core(**inputs, use_cache=True, return_dict=True).logits


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position of each token counted over the attended ones only (left padding does not shift it)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def soft_prompt(model: nn.Module, rows: int, like: torch.Tensor) -> torch.Tensor:
    prompts = model.get_prompt(batch_size=rows)
    return prompts[:, : model.active_peft_config.num_virtual_tokens].to(like.dtype)
