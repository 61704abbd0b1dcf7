"""Hybrid: several methods trained together, each hooking into a different place.

He et al. (2022, "Towards a Unified View of Parameter-Efficient Transfer Learning", ICLR,
arXiv:2110.04366) show that methods modifying different places combine well: their MAM adapter is
prefix tuning in attention + a scaled parallel adapter beside the FFN (the default here). Prompt
tuning + LoRA is another common pairing that peft cannot build by itself: get_peft_model takes one
config, and peft's PeftMixedModel refuses prompt learning (peft issues #183, #720, #2307).

Composition (order matters, and is the same in apply and load so parameter names match):
1. peft methods that wrap Linear layers (LoRA, IA3) are injected without peft's outer wrapper,
   with ``peft.inject_adapter_in_model`` (it freezes every non-adapter parameter);
2. peftlab's own methods (parallel_adapter) run their ``apply``; after 1, so LoRA's 'all-linear'
   does not wrap the adapters' own Linear layers;
3. at most one prompt-learning peft method (prompt_tuning or prefix_tuning) goes last, through
   ``peft.get_peft_model``: peft prepends virtual tokens / key-values in the outer PeftModel's
   forward, so that wrapper must be the outermost module. peft can hold only one prompt-learning
   adapter active at a time, so prompt_tuning + prefix_tuning is refused.
Each step may freeze what the previous ones made trainable, so the trainable parameters of every
step are collected and re-enabled at the end.

With ``gates: true`` every component sits behind a learned gate (UniPELT, Mao et al., 2022,
arXiv:2110.07577; methods/gates.py): lora + prefix_tuning + a series adapter is UniPELT, labelled
'unipelt'; other gated combinations are labelled 'gated-<components>'. Gates exist for lora,
prefix_tuning, series_adapter and parallel_adapter; they are added after every component, and each
trains in the group of the component it gates.

Two components may not share a hook point (two Linear wraps would have to nest), and methods that
train existing weights (full, last layers) or nothing (none) are refused: a hybrid's trainable
parameters must belong to exactly one component.

Learning rate: each component trains in its own AdamW group at the lr it would get alone with the
same options (``Method.lr(options)``: prefix tuning with prefix_projection gets 3e-3, not 1e-2)
(``param_groups``); ``train.lr`` sets the largest component's lr (``default_lr(cfg)``) and the
others keep their ratio to it. ``METHOD.default_lr`` (1e-3) is only what `peftlab methods` lists.

Saved format ("peftlab format", version 1), in the adapter folder:
    hybrid.safetensors    every trainable tensor, keyed by its parameter name in the hybrid model
                          (e.g. ``base_model.model.layers.0.self_attn.q_proj.lora_A.default.weight``,
                          ``prompt_encoder.default.embedding.weight``)
    peftlab_method.json   {"method": "hybrid", "format": 1, "methods": [{"name": ..., <options>}, ...],
                           "gates": bool, "owners": {parameter name: component name}}
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from peft import get_peft_model, inject_adapter_in_model
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods import gates
from peftlab.methods.base import Hook, Method, option_errors
from peftlab.methods.registry import REGISTRY, get_method
from peftlab.methods.tensors import load_tensors, save_tensors

WEIGHTS = "hybrid.safetensors"
PROMPT_HOOKS = frozenset({Hook.INPUT_EMBEDDINGS, Hook.ATTENTION_KV})  # peft prompt learning
EXCLUSIVE_HOOKS = {Hook.PARAMETER_SUBSET: "trains existing weights", Hook.NONE: "trains nothing"}


class HybridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    methods: list[dict[str, Any]] = Field(
        [{"name": "prefix_tuning"}, {"name": "parallel_adapter"}],
        min_length=2,
        description="Component methods, each {name: <method>, <its options>}, at least 2, no two hooking into "
        "the same place. Default: He et al.'s MAM adapter (prefix tuning + parallel adapter).",
    )
    gates: bool = Field(
        False,
        description="UniPELT: put each component behind a learned gate (lora, prefix_tuning, series_adapter, "
        "parallel_adapter only). With lora + prefix_tuning + series_adapter this is UniPELT (Mao et al., 2022).",
    )
    _components: list[tuple[Method, BaseModel]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _validate_components(self) -> HybridConfig:
        # Raises PeftlabError (not ValueError) so the messages keep their method.methods[i] names.
        self._components = validate_components(self.methods)
        if self.gates:
            gates.check([(m.name, options) for m, options in self._components])
        return self

    def components(self) -> list[tuple[Method, BaseModel]]:
        return self._components


def _component(i: int, entry: dict[str, Any]) -> tuple[Method, BaseModel]:
    where = f"method.methods[{i}]"
    if not isinstance(entry, dict) or "name" not in entry:
        raise PeftlabError(f"{where}: each component is a mapping {{name: <method>, <its options>}}, got {entry!r}")
    if entry["name"] == "hybrid":
        raise PeftlabError(f"{where}.name: a hybrid cannot contain a hybrid; list its methods directly")
    if entry["name"] == "qlora":  # it quantizes the base itself, before anything else may touch it
        raise PeftlabError(f"{where}.name: qlora cannot be a hybrid component; use lora in the hybrid")
    if entry["name"] == "peft" and str(entry.get("type", "")).upper() == "ADALORA":
        raise PeftlabError(
            f"{where}.type: ADALORA cannot be a hybrid component: its rank allocator lives on peft's own "
            "AdaLoRA model, which a hybrid does not build; run it alone"
        )
    try:
        method = get_method(entry["name"])
    except PeftlabError as e:
        raise PeftlabError(f"{where}.name: {str(e).removeprefix('method.name: ')}") from None
    try:
        options = method.config_cls.model_validate({k: v for k, v in entry.items() if k != "name"})
    except ValidationError as e:
        raise PeftlabError(option_errors(e, method, where)) from None
    return method, options


def check_compatible(components: list[tuple[Method, BaseModel]]) -> None:
    """Refuse duplicates, shared hook points, exclusive methods and two prompt-learning methods."""
    for i, (a, a_options) in enumerate(components):
        for b, b_options in components[i + 1 :]:
            a_hooks, b_hooks = a.hooks_of(a_options), b.hooks_of(b_options)
            if a.name == b.name:
                raise PeftlabError(f"method.methods: '{a.name}' is listed twice; a hybrid combines different methods")
            for m, hooks, other in ((a, a_hooks, b), (b, b_hooks, a)):
                for hook in hooks & set(EXCLUSIVE_HOOKS):
                    raise PeftlabError(
                        f"method.methods: '{m.name}' (hook {hook.value}) {EXCLUSIVE_HOOKS[hook]} and "
                        f"cannot be combined with '{other.name}'"
                    )
            shared = a_hooks & b_hooks
            if shared:
                hook = sorted(h.value for h in shared)[0]
                raise PeftlabError(
                    f"method.methods: '{a.name}' and '{b.name}' both hook into {hook}; "
                    "a hybrid combines methods that change different places"
                )
            if a_hooks & PROMPT_HOOKS and b_hooks & PROMPT_HOOKS:
                raise PeftlabError(
                    f"method.methods: '{a.name}' and '{b.name}' are both prompt-learning methods, which "
                    "peft cannot stack (one prompt-learning adapter is active at a time); keep one"
                )


def validate_components(entries: list[dict[str, Any]]) -> list[tuple[Method, BaseModel]]:
    components = [_component(i, e) for i, e in enumerate(entries)]
    check_compatible(components)
    return components


def _kind(method: Method, options: BaseModel) -> int:
    """Application order: 0 = peft Linear wrap (injected), 1 = own method, 2 = peft prompt learning."""
    if method.peft_config is None:
        return 1
    return 2 if method.hooks_of(options) & PROMPT_HOOKS else 0


def _apply_one(model: nn.Module, method: Method, options: BaseModel) -> nn.Module:
    kind = _kind(method, options)
    if kind == 0:
        model = inject_adapter_in_model(method.peft_config(model, options), model)
        if method.after_peft is not None:  # LoRA's speed options, as its own apply sets them
            method.after_peft(model, options)
        return model
    if kind == 1:
        return method.apply(model, options)
    with warnings.catch_warnings():
        # get_peft_model warns when the model already holds peft layers: here that is the point.
        warnings.filterwarnings("ignore", message="You are trying to modify a model with PEFT for a second time")
        model = get_peft_model(model, method.peft_config(model, options))
    if method.after_peft is not None:
        method.after_peft(model, options)
    return model


def _refuse_misfits(model: nn.Module, cfg: HybridConfig) -> None:
    """A component that does not apply to the model (``Method.applies_to``) stops the hybrid before any
    component changed it. Here, not in the hybrid's own applies_to: which components it has is an option."""
    for i, (method, _) in enumerate(cfg.components()):
        reason = method.applies_to(model)
        if reason is not None:
            raise PeftlabError(f"method.methods[{i}]: {method.name} does not apply to this model: {reason}")


def apply(model: nn.Module, cfg: HybridConfig) -> nn.Module:
    _refuse_misfits(model, cfg)
    owner: dict[int, str] = {}  # id(parameter) -> component that made it trainable
    for method, options in sorted(cfg.components(), key=lambda c: _kind(*c)):
        model = _apply_one(model, method, options)
        for p in model.parameters():
            if p.requires_grad:
                owner.setdefault(id(p), method.name)
    for p in model.parameters():  # later steps froze earlier components: re-enable exactly those
        p.requires_grad_(id(p) in owner)
    owners = {n: owner[id(p)] for n, p in model.named_parameters() if id(p) in owner}
    if cfg.gates:  # after every component, so that no Linear wrap takes a gate for a target
        owners |= gates.attach(model, [m.name for m, _ in cfg.components()])
    model.peftlab_hybrid = {  # read by save() and param_groups()
        "methods": list(cfg.methods),
        "gates": cfg.gates,
        "owners": owners,
    }
    return model


def default_lr(cfg: HybridConfig) -> float:
    """The largest component lr (each for its options): with a single lr, the component that needs the most gets it."""
    return max(m.lr(options) for m, options in cfg.components())


def param_groups(model: nn.Module, cfg: HybridConfig, base_lr: float) -> list[dict]:
    """AdamW parameter groups, one per component, each at its own lr(options) * base_lr / default_lr(cfg):
    with base_lr = default_lr(cfg) every component trains at the lr it would get alone."""
    owners = model.peftlab_hybrid["owners"]
    params = dict(model.named_parameters())
    scale = base_lr / default_lr(cfg)
    return [
        {"name": m.name, "lr": m.lr(o) * scale, "params": [params[n] for n, owner in owners.items() if owner == m.name]}
        for m, o in cfg.components()
    ]


UNIPELT = {"lora", "prefix_tuning", "series_adapter"}
PREFIX_GATE = (
    "prefix gate: one learned scalar per layer; UniPELT computes it from the layer's input (peft builds the "
    "prefix before the first layer runs; methods/gates.py)"
)


def deviations(cfg: HybridConfig) -> tuple[str, ...]:
    """Where a gated hybrid departs from UniPELT (Mao et al., 2022, section 3): the prefix's gate."""
    return (PREFIX_GATE,) if cfg.gates and any(m.name == "prefix_tuning" for m, _ in cfg.components()) else ()


def label(entry: dict) -> str:
    """'lora+prompt_tuning': each component's own label ('houlsby' for a series adapter, 'loha' for peft's
    LoHa); with gates 'unipelt' (lora + prefix_tuning + a series adapter) or 'gated-<that label>'."""
    parts = [m for m in entry.get("methods") or [] if isinstance(m, dict)]
    names = [REGISTRY[m["name"]].label(m) if m.get("name") in REGISTRY else str(m.get("name")) for m in parts]
    joined = "+".join(names) or "hybrid"
    if not entry.get("gates"):
        return joined
    return "unipelt" if sorted(m.get("name") for m in parts) == sorted(UNIPELT) else f"gated-{joined}"


def markers() -> tuple[str, ...]:
    """A hybrid adds what its components add: the markers of every method registered now (their own,
    so that no method's markers are derived from another's in a loop)."""
    return tuple(sorted({m for c in REGISTRY.values() for m in c.added_markers}))


def save(model: nn.Module, folder: Path) -> None:
    meta = {"method": "hybrid", "format": 1, **model.peftlab_hybrid}
    save_tensors(model, list(meta["owners"]), folder, WEIGHTS, meta)


def load(base: nn.Module, folder: Path, cfg: HybridConfig) -> nn.Module:
    model = apply(base, cfg)
    return load_tensors(model, list(model.peftlab_hybrid["owners"]), folder, WEIGHTS)


METHOD = Method(
    name="hybrid",
    paper="He et al., 2022. Towards a Unified View of Parameter-Efficient Transfer Learning. ICLR. "
    "arXiv:2110.04366 (MAM adapter: prefix tuning + parallel adapter). With gates: Mao et al., 2022. UniPELT: "
    "A Unified Framework for Parameter-Efficient Language Model Tuning. ACL. arXiv:2110.07577.",
    config_cls=HybridConfig,
    # Those of its components; listed here for `peftlab methods`.
    hooks=frozenset(
        {Hook.LINEAR_WRAP, Hook.BLOCK_PARALLEL, Hook.BLOCK_SERIES, Hook.INPUT_EMBEDDINGS, Hook.ATTENTION_KV}
    ),
    default_lr=1e-3,
    apply=apply,
    save=save,
    load=load,
    zero_init=False,
    added_markers_for=markers,
    label_for=lambda entry: label(entry),
    default_lr_for=default_lr,
    param_groups=param_groups,
    no_decay_for=lambda cfg: tuple(p for m, options in cfg.components() for p in m.no_decay_patterns(options)),
    deviations_for=deviations,
)
