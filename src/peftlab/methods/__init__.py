"""The method registry: every fine-tuning method by name.

A new method is one file exporting ``METHOD`` (see ``base.Method``) plus one line below.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel, ValidationError

from peftlab.errors import PeftlabError, suggest
from peftlab.methods import (
    full,
    hybrid,
    ia3,
    last_layers,
    lora,
    none,
    parallel_adapter,
    peft_tuner,
    prefix_tuning,
    prompt_tuning,
    qlora,
    series_adapter,
)
from peftlab.methods.base import Hook, Method, count_parameters, option_errors, trainable_parameters

REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry: `peftlab methods` lists it, configs name it, and the tests that run
    over REGISTRY (tests/methods/test_every_method.py, tests/models/test_decode.py) check it."""
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} is registered twice")
    REGISTRY[method.name] = method
    return method


for _method in (
    none.METHOD,
    full.METHOD,
    last_layers.METHOD,
    lora.METHOD,
    qlora.METHOD,
    ia3.METHOD,
    prompt_tuning.METHOD,
    prefix_tuning.METHOD,
    parallel_adapter.METHOD,
    series_adapter.METHOD,
    peft_tuner.METHOD,
):
    register(_method)
# A hybrid adds what its components add.
register(replace(hybrid.METHOD, added_markers=tuple(sorted({m for c in REGISTRY.values() for m in c.added_markers}))))


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise PeftlabError(
            f"method.name: unknown method '{name}'{suggest(name, list(REGISTRY))}; available: {', '.join(REGISTRY)}"
        )
    return REGISTRY[name]


def method_options(method_cfg) -> BaseModel:
    """Validate the options of ``method:`` against the chosen method's config class."""
    method = get_method(method_cfg.name)
    try:
        return method.config_cls.model_validate(method_cfg.options())
    except ValidationError as e:
        raise PeftlabError(option_errors(e, method, "method")) from None


__all__ = [
    "register",
    "REGISTRY",
    "Hook",
    "Method",
    "count_parameters",
    "get_method",
    "method_options",
    "trainable_parameters",
]
