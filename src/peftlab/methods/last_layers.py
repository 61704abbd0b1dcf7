"""Last layers: fine-tune only the top k transformer blocks (Lee, Tang & Lin, 2019, "What Would Elsa
Do? Freezing Layers During Transformer Fine-Tuning", arXiv:1911.03090).

Lee et al. found that training only the last blocks of BERT keeps most of full fine-tuning's
quality; the lower blocks stay frozen. Optionally the final norm and the output head train too.

Which blocks: the blocks of the decoder stack (``model.model.layers`` on Llama,
``model.transformer.h`` on GPT-Neo, ``model.decoder.block`` on T5). On T5 the k last blocks are the
*decoder's*; ``include_encoder`` also trains the k last blocks of the encoder. The stacks a model has
are its kind's (``ModelKind.stacks``, models/kind.py); the blocks and the final norm are found by the
child names of models/arch.py.

Tied output head: SmolLM2, GPT-Neo, the tiny test models and original T5 share one tensor between
``lm_head`` and the input embeddings (FLAN-T5 checkpoints load with their own lm_head). Training
that tensor would silently train the input embeddings too, which is no longer "the last layers".
With ``train_head`` and a tied head, the head is *untied*: ``lm_head`` gets its own copy of the
weight and only the copy trains, so the input embeddings stay bit-identical. Untying does not
change the logits before training.

Saved as one safetensors file holding only the trained tensors ({name: tensor}) plus a small JSON
(method and tensor names); loading applies the method to a fresh base and copies the tensors in,
strict on names.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.base import Hook, Method, trainable_parameters
from peftlab.methods.tensors import load_tensors, save_tensors
from peftlab.models import arch
from peftlab.models.kind import kind_of

WEIGHTS = "last_layers.safetensors"


class LastLayersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_layers: int = Field(
        2,
        ge=0,
        description="k: how many of the last transformer blocks train (on T5: the last k decoder blocks).",
    )
    include_encoder: bool = Field(
        False,
        description="Encoder-decoder models only: also train the last k blocks of the encoder.",
    )
    train_head: bool = Field(
        False,
        description="Also train the output head (lm_head). A head tied to the input embeddings is untied "
        "first (lm_head gets its own copy), so the input embeddings stay frozen.",
    )
    train_final_norm: bool = Field(
        True,
        description="Also train the norm after the last block (Llama norm, GPT-Neo ln_f, T5 final_layer_norm).",
    )


def _stacks(model: nn.Module, cfg: LastLayersConfig) -> list[tuple[str, nn.Module]]:
    """(name, stack) pairs whose top blocks train: the decoder, plus T5's encoder when asked."""
    stacks = kind_of(model).stacks(model)
    if cfg.include_encoder and "encoder" not in stacks:
        raise PeftlabError(
            "method.include_encoder: only encoder-decoder models (T5) have an encoder; allowed for this model: false"
        )
    roles = ("decoder", "encoder") if cfg.include_encoder else ("decoder",)
    return [(role, stacks[role]) for role in roles]


def _blocks(stack: nn.Module) -> nn.ModuleList:
    """The stack's transformer blocks: its child named as arch.BLOCKS names them (layers / h / block)."""
    for name in arch.BLOCKS:
        blocks = getattr(stack, name, None)
        if isinstance(blocks, nn.ModuleList):
            return blocks
    raise PeftlabError(
        f"method 'last_layers': cannot find the transformer blocks of {type(stack).__name__} "
        f"(a child named {' / '.join(arch.BLOCKS)}; models/arch.py)"
    )


def _final_norms(stack: nn.Module) -> list[nn.Module]:
    # The final norm is a direct child of the stack (arch.FINAL_NORM), never inside a block.
    return [m for name, m in stack.named_children() if name in arch.FINAL_NORM]


def _untie_head(model: nn.Module) -> nn.Module:
    """Give a tied lm_head its own copy of the weight, so training it leaves the input embeddings alone."""
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head.weight is embeddings.weight:
        # A copy, not a view: the two tensors must be independent for the embeddings to stay frozen.
        # The config is left alone so that the forward pass stays the same (T5 before transformers 5
        # chose its output scaling by tie_word_embeddings).
        head.weight = nn.Parameter(embeddings.weight.detach().clone())
    return head


def _modules_to_train(model: nn.Module, cfg: LastLayersConfig) -> list[nn.Module]:
    modules: list[nn.Module] = []
    for name, stack in _stacks(model, cfg):
        blocks = _blocks(stack)
        if cfg.num_layers > len(blocks):
            raise PeftlabError(
                f"method.num_layers: {cfg.num_layers} is more than the {len(blocks)} blocks of the "
                f"{name}; allowed: 0..{len(blocks)}"
            )
        modules += list(blocks)[len(blocks) - cfg.num_layers :]
        if cfg.train_final_norm:
            modules += _final_norms(stack)
    if cfg.train_head:
        modules.append(_untie_head(model))
    if not modules:
        raise PeftlabError(
            "method 'last_layers': nothing would train; set num_layers >= 1, train_head: true or train_final_norm: true"
        )
    return modules


def apply(model: nn.Module, cfg: LastLayersConfig) -> nn.Module:
    modules = _modules_to_train(model, cfg)  # before freezing: errors leave the model as it was
    model.requires_grad_(False)
    for module in modules:
        module.requires_grad_(True)
    return model


def save(model: nn.Module, folder: Path) -> None:
    # Only the trained tensors: the frozen rest is the base model, loaded again from its source.
    names = sorted(trainable_parameters(model))
    save_tensors(model, names, folder, WEIGHTS, {"method": "last_layers", "tensors": names})


def load(base: nn.Module, folder: Path, cfg: LastLayersConfig) -> nn.Module:
    model = apply(base, cfg)  # same untying and the same set of trained names as in training
    return load_tensors(model, sorted(trainable_parameters(model)), folder, WEIGHTS)


METHOD = Method(
    name="last_layers",
    paper="Lee, Tang & Lin, 2019. What Would Elsa Do? Freezing Layers During Transformer Fine-Tuning. "
    "arXiv:1911.03090.",
    config_cls=LastLayersConfig,
    hooks=frozenset({Hook.PARAMETER_SUBSET}),
    default_lr=1e-4,
    apply=apply,
    save=save,
    load=load,
)
