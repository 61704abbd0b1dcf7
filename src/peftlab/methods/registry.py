"""The method registry: every fine-tuning method by name, and the lookups on it.

Its own module so that the package (``peftlab.methods``, which imports every method and registers it)
and hybrid.py (which looks its components up) both import it and neither imports the other. Every
lookup reads the registry when it is called, so a method registered after import (a plugin, the
tests' toy method) is seen everywhere: by configs, hybrids and `peftlab methods` alike.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError
from torch import nn

from peftlab.errors import PeftlabError, suggest
from peftlab.methods.base import Method, option_errors

REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry: `peftlab methods` lists it, configs name it, and the tests that run
    over REGISTRY (tests/methods/test_every_method.py, tests/models/test_decode.py) check it."""
    if method.name in REGISTRY:
        # Two methods under one name would make every config naming it ambiguous: refuse the second.
        first = REGISTRY[method.name].apply.__module__
        raise ValueError(f"method {method.name!r} is already registered (by {first}); give the new method another name")
    REGISTRY[method.name] = method
    return method


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


def misfit(method: Method, model: nn.Module, model_name: str) -> str | None:
    """None when ``method`` applies to ``model``; else the message that says why not, naming the model:
    "method bitfit: the model has no bias terms (tiny-llama); BitFit needs a model with biases ...".

    The reason's first clause (up to '; ') is what the model lacks; the model's name follows it, so a
    method's ``applies_to`` need not know what the model is called."""
    reason = method.applies_to(model)
    if reason is None:
        return None
    lacks, _, needs = reason.partition("; ")
    return f"method {method.name}: {lacks} ({model_name})" + (f"; {needs}" if needs else "")


def refuse_misfit(method: Method, model: nn.Module, model_name: str) -> None:
    """Raise the PeftlabError of ``misfit`` when the method does not apply to the model."""
    message = misfit(method, model, model_name)
    if message is not None:
        raise PeftlabError(message)


def refuse_misfit_before_loading(method_name: str, model_cfg) -> None:
    """What training would refuse once the model loaded, asked of the model's structure alone (no
    weights): a method that does not apply to the model (BitFit on a model without biases). Called by
    `check`, by `train` before its run folder is made and by `compare` before its first run."""
    from peftlab.methods.base import fits_every_model
    from peftlab.models.skeleton import model_skeleton

    method = get_method(method_name)
    if method.applies_to is fits_every_model:  # nothing to ask: no model config is read
        return
    skeleton = model_skeleton(model_cfg)
    if skeleton is not None:
        refuse_misfit(method, skeleton, model_cfg.name)
