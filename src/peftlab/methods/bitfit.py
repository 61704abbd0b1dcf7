"""BitFit: only the bias terms train (Ben Zaken, Ravfogel & Goldberg, 2022, "BitFit: Simple
Parameter-efficient Fine-tuning for Transformer-based Masked Language-models", ACL 2022,
arXiv:2106.10199).

Ben Zaken et al. freeze every weight matrix of BERT and train its bias vectors (of the attention
projections, the feed-forward layers and the layer norms): about 0.1% of the parameters, close to full
fine-tuning on GLUE with little data. Here the bias terms are every parameter whose name ends in
``.bias``; ``bias_pattern`` keeps those whose name matches it (the paper also trains a subset: the
query and second feed-forward biases alone). The paper's task-specific classifier has no counterpart:
peftlab's tasks are answered through the model's own (frozen) output head, as with every other method.

It applies only to models that have biases: GPT-Neo (its attention output projection, feed-forward
layers and layer norms), not Llama (SmolLM2) or T5, whose layers have none (``applies_to``).

Saved like last_layers: one safetensors file of {parameter name: tensor} holding only the trained
biases, plus peftlab_method.json ({"method": "bitfit", "format": 1, "tensors": [names]}), both written
atomically; loading applies the method to a fresh base and copies the tensors in, strict on names.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.base import Hook, Method
from peftlab.methods.tensors import META, load_tensors
from peftlab.rundir.runio import atomic_write_bytes, write_json

WEIGHTS = "bitfit.safetensors"
NO_BIASES = "the model has no bias terms; BitFit needs a model with biases such as GPT-Neo"


class BitFitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bias_pattern: str = Field(
        "*",
        min_length=1,
        description="Which bias terms train: an fnmatch pattern over their parameter names. '*' (the paper): "
        "every bias; e.g. '*.mlp.*' the feed-forward biases only.",
    )


def bias_names(model: nn.Module) -> list[str]:
    """The model's bias terms, by parameter name (a tensor shared by two modules once)."""
    return [name for name, _ in model.named_parameters() if name.rsplit(".", 1)[-1] == "bias"]


def applies_to(model: nn.Module) -> str | None:
    return None if bias_names(model) else NO_BIASES


def _chosen(model: nn.Module, cfg: BitFitConfig) -> list[str]:
    found = bias_names(model)
    if not found:  # applies_to said so before a run starts; this is the last guard, for direct calls
        raise PeftlabError(f"method bitfit: {NO_BIASES}")
    chosen = [name for name in found if fnmatchcase(name, cfg.bias_pattern)]
    if not chosen:
        raise PeftlabError(
            f"method.bias_pattern: '{cfg.bias_pattern}' matches none of the model's {len(found)} bias terms "
            f"(e.g. {', '.join(found[:3])}); '*' trains them all"
        )
    return chosen


def apply(model: nn.Module, cfg: BitFitConfig) -> nn.Module:
    names = _chosen(model, cfg)  # before freezing: an error leaves the model as it was
    model.requires_grad_(False)
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(True)
    # By name, not by requires_grad: a loaded (frozen) model saves the same tensors again.
    model.peftlab_bitfit = names
    return model


def save_adapter(model: nn.Module, folder: Path) -> None:
    names = model.peftlab_bitfit
    params = dict(model.named_parameters())
    # Atomic, as every file of a run folder: a crash mid-save leaves the old file or none, never half.
    atomic_write_bytes(folder / WEIGHTS, save({n: params[n].detach().contiguous().cpu() for n in names}))
    write_json(folder / META, {"method": "bitfit", "format": 1, "tensors": names})


def load(base: nn.Module, folder: Path, cfg: BitFitConfig) -> nn.Module:
    model = apply(base, cfg)  # the same names as in training, from the same options
    return load_tensors(model, model.peftlab_bitfit, folder, WEIGHTS)


METHOD = Method(
    name="bitfit",
    paper="Ben Zaken, Ravfogel & Goldberg, 2022. BitFit: Simple Parameter-efficient Fine-tuning for "
    "Transformer-based Masked Language-models. ACL. arXiv:2106.10199.",
    config_cls=BitFitConfig,
    hooks=frozenset({Hook.PARAMETER_SUBSET}),
    # The top of the paper's grid (1e-4 .. 1e-3): a bias moves the activations by its own size only.
    default_lr=1e-3,
    apply=apply,
    save=save_adapter,
    load=load,
    applies_to=applies_to,
)
