"""What a fine-tuning method is: a config class, where it hooks in, and four functions.

Composition over inheritance: a method is a record of plain functions, not a subclass.
The hook point is declared so that hybrids can refuse combinations that touch the same place
(e.g. two methods both wrapping the same Linear layers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from fnmatch import fnmatchcase
from pathlib import Path

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from peftlab.errors import suggest


class Hook(str, Enum):  # noqa: UP042 (str(Hook.X) stays 'Hook.X'; messages use .value)
    """Where a method changes the network. Two methods of a hybrid may not share a hook."""

    NONE = "none"  # zero-shot: nothing trains
    PARAMETER_SUBSET = "parameter_subset"  # full fine-tuning, last layers: existing weights train
    LINEAR_WRAP = "linear_wrap"  # LoRA, IA3: each targeted nn.Linear is wrapped
    BLOCK_PARALLEL = "block_parallel"  # parallel adapters: a module beside the FFN / attention block
    BLOCK_SERIES = "block_series"  # series adapters: a module after the FFN / attention block's output
    INPUT_EMBEDDINGS = "input_embeddings"  # soft prompt tuning: virtual tokens before the input
    ATTENTION_KV = "attention_kv"  # prefix tuning: virtual keys/values in attention


@dataclass(frozen=True)
class LoopHooks:
    """What a method needs from the training loop beyond its forward (AdaLoRA's rank allocator)."""

    extra_loss: Callable[[], torch.Tensor]  # added to the step's mean loss, once per optimizer step
    after_optimizer_step: Callable[[int], None]  # (0-based step) after optimizer.step, gradients still there
    state: Callable[[], dict[str, torch.Tensor]]  # saved in the checkpoint, for exact resume
    load_state: Callable[[dict[str, torch.Tensor]], None]
    # (steps done) -> whether the weights may be kept as the best on validation
    selectable: Callable[[int], bool] = lambda step: True


def fits_every_model(model: nn.Module) -> None:
    """``Method.applies_to`` of a method that applies to any model (most do)."""
    return None


@dataclass(frozen=True)
class Method:
    name: str
    paper: str  # citation shown by `peftlab methods`
    config_cls: type[BaseModel]
    hooks: frozenset[Hook]
    default_lr: float
    # apply(model, options) -> model whose only trainable parameters are the method's
    apply: Callable[[nn.Module, BaseModel], nn.Module]
    # save(model, folder): safetensors + a JSON config
    save: Callable[[nn.Module, Path], None]
    # load(fresh_base_model, folder, options) -> model with the saved method applied
    load: Callable[[nn.Module, Path, BaseModel], nn.Module]
    trains: bool = True
    # Parameter-name markers of the tensors the method adds (a name holds one as a dotted part or
    # its start: "lora_" matches "q_proj.lora_A.default.weight"); `peftlab params` counts them as
    # added. Empty for methods that train existing weights.
    added_markers: tuple[str, ...] = ()
    # Methods whose markers are other methods' (hybrids: every registered component's): () -> markers,
    # read when asked, so that a method registered later is counted too.
    added_markers_for: Callable[[], tuple[str, ...]] | None = None
    # model -> None when the method applies to it, else why not: what the model lacks, then '; ' and
    # what the method needs ("the model has no bias terms; BitFit needs a model with biases such as
    # GPT-Neo"); registry.misfit puts the model's name between the two. `peftlab check` and training ask
    # before anything is written; the every-method tests run a method only on the tiny models it fits.
    applies_to: Callable[[nn.Module], str | None] = fits_every_model
    # Its update is a change of existing weights that `peftlab merge` can fold in (LoRA, IA3).
    mergeable: bool = False
    # Methods where that depends on the options (the peft pass-through: LoHa merges, P-tuning does not).
    mergeable_for: Callable[[BaseModel], bool] | None = None
    # options -> the method's label in a comparison when the experiment gives none (hybrids: "lora+prompt_tuning").
    label_for: Callable[[dict], str] | None = None
    # True when the method's output starts at zero (LoRA's lora_B, a parallel adapter's Up), so
    # the model's logits are the base model's until the first update.
    zero_init: bool = False
    # For methods peft implements: options -> peft config. Hybrids use it to inject the method
    # without peft's outer wrapper (see hybrid.py).
    peft_config: Callable[[nn.Module, BaseModel], object] | None = None
    # Run on the peft-wrapped model after get_peft_model (e.g. prefix init from activations), by
    # apply and by hybrids alike.
    after_peft: Callable[[nn.Module, BaseModel], None] | None = None
    # Methods made of parts that need different learning rates (hybrids): options -> default lr,
    # and (model, options, lr) -> AdamW parameter groups. None = one group at default_lr.
    default_lr_for: Callable[[BaseModel], float] | None = None
    param_groups: Callable[[nn.Module, BaseModel, float], list[dict]] | None = None
    # Parameter-name patterns (fnmatch, the whole name) of tensors train.weight_decay must not shrink
    # although they have 2 dimensions: soft prompts and prefixes (decay pulls them off the embedding
    # manifold), IA3 scaling vectors (they start at one: decay would switch activations off). Tensors
    # of fewer dimensions (biases, norm weights, DoRA magnitudes) never decay, whatever the method.
    no_decay: tuple[str, ...] = ()
    # Methods whose patterns depend on their options (hybrids: their components'): options -> patterns.
    no_decay_for: Callable[[BaseModel], tuple[str, ...]] | None = None
    # Methods whose hook point depends on their options (the peft pass-through: P-tuning hooks into
    # the input embeddings, the other types wrap Linear layers): options -> hooks.
    hooks_for: Callable[[BaseModel], frozenset[Hook]] | None = None
    # Methods whose training needs the loop's help (methods/adalora.py): the applied model -> hooks, or None.
    loop_hooks: Callable[[nn.Module], LoopHooks | None] | None = None
    # options -> where this implementation departs from the paper it cites, one sentence each; recorded in
    # summary.json and shown in the leaderboard row's note (UniPELT's prefix gate, methods/gates.py).
    deviations_for: Callable[[BaseModel], tuple[str, ...]] | None = None
    # (options, weights dtype) -> a transformers quantization config the base model loads straight into
    # (QLoRA's 4-bit NF4): a full-precision copy never exists, so the memory column shows the saving.
    # Models built in code (the tiny test models) have no file to load that way; ``apply`` quantizes them.
    load_quantized: Callable[[BaseModel, torch.dtype], object] | None = None

    def deviations(self, options: BaseModel) -> tuple[str, ...]:
        return self.deviations_for(options) if self.deviations_for else ()

    def quantization(self, options: BaseModel, dtype: torch.dtype) -> object | None:
        """The quantization config to load the base model with, or None for full precision."""
        return self.load_quantized(options, dtype) if self.load_quantized else None

    def hooks_of(self, options: BaseModel) -> frozenset[Hook]:
        return self.hooks_for(options) if self.hooks_for else self.hooks

    def merges(self, options: BaseModel) -> bool:
        """Whether a model trained with these options can be folded into its base weights."""
        return self.mergeable_for(options) if self.mergeable_for else self.mergeable

    def lr(self, options: BaseModel) -> float:
        return self.default_lr_for(options) if self.default_lr_for else self.default_lr

    def no_decay_patterns(self, options: BaseModel) -> tuple[str, ...]:
        return self.no_decay_for(options) if self.no_decay_for else self.no_decay

    def decays(self, name: str, param: nn.Parameter, options: BaseModel) -> bool:
        """Whether weight decay applies to the trainable tensor ``name``: weight matrices only."""
        return param.ndim >= 2 and not any(fnmatchcase(name, p) for p in self.no_decay_patterns(options))

    def decay_groups(self, model: nn.Module, options: BaseModel, groups: list[dict]) -> list[dict]:
        """AdamW ``groups`` each split in two, same options: the tensors that decay, and those that do
        not (``weight_decay`` 0; see ``decays``). Empty halves are dropped."""
        names = {id(p): n for n, p in model.named_parameters()}
        split = []
        for group in groups:
            params = list(group["params"])
            kept = [p for p in params if self.decays(names[id(p)], p, options)]
            spared = [p for p in params if not self.decays(names[id(p)], p, options)]
            split += [{**group, "params": kept}] if kept else []
            split += [{**group, "params": spared, "weight_decay": 0.0}] if spared else []
        return split

    def label(self, entry: dict) -> str:
        """The label of a comparison's method entry ({name, <options>}) that names none."""
        return self.label_for(entry) if self.label_for else self.name

    def markers(self) -> tuple[str, ...]:
        """The parameter-name markers of the tensors this method adds (``added_markers``), as of now."""
        return self.added_markers_for() if self.added_markers_for else self.added_markers

    def adds(self, parameter_name: str) -> bool:
        """Whether ``parameter_name`` is a tensor this method adds to the model."""
        parts = parameter_name.split(".")
        return any(part.startswith(marker) for marker in self.markers() for part in parts)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total), counting each shared (tied) tensor once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def option_errors(err: ValidationError, method: Method, where: str) -> str:
    """An options ValidationError as lines that name each field (``method.rank``) and what is allowed."""
    lines = [f"{where}: invalid options for '{method.name}'"]
    allowed = list(method.config_cls.model_fields)
    for e in err.errors():
        loc = where + "".join(f".{p}" for p in e["loc"])
        if e["type"] == "extra_forbidden":
            hint = suggest(str(e["loc"][-1]), allowed)
            lines.append(f"  {loc}: unknown option{hint}; allowed: {', '.join(allowed) or '(none)'}")
        else:
            got = "" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})"  # not the whole mapping
            lines.append(f"  {loc}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "\n".join(lines)
