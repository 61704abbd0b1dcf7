"""Every fine-tuning method, registered by name (the registry itself: registry.py).

A new method is one file exporting ``METHOD`` (see ``base.Method``), imported below, plus its line in the
list that registers them (README.md, "Add a method", walks through bitfit.py).
"""

from __future__ import annotations

from peftlab.methods import (
    bitfit,
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
from peftlab.methods.base import Hook, Method, count_parameters, trainable_parameters
from peftlab.methods.registry import REGISTRY, get_method, method_options, misfit, refuse_misfit, register

for _method in (
    none.METHOD,
    full.METHOD,
    last_layers.METHOD,
    bitfit.METHOD,
    lora.METHOD,
    qlora.METHOD,
    ia3.METHOD,
    prompt_tuning.METHOD,
    prefix_tuning.METHOD,
    parallel_adapter.METHOD,
    series_adapter.METHOD,
    peft_tuner.METHOD,
    hybrid.METHOD,
):
    register(_method)


__all__ = [
    "register",
    "REGISTRY",
    "Hook",
    "Method",
    "count_parameters",
    "get_method",
    "method_options",
    "misfit",
    "refuse_misfit",
    "trainable_parameters",
]
