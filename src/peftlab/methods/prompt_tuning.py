"""Prompt tuning: a learned soft prompt before the input (Lester, Al-Rfou & Constant, 2021,
"The Power of Scale for Parameter-Efficient Prompt Tuning", arXiv:2104.08691).

num_virtual_tokens embedding vectors (each d_model wide) are prepended to the embedded input; the
whole model stays frozen. peft prepends them, extends the attention mask with ones and, for causal
models, extends the labels with -100, so the loss stays on the target tokens only.

Where the prompt goes: before the *encoder* input on T5 (as in the paper) and before the whole
sequence on decoder-only models. peft's default for seq2seq models allocates a second block of
num_virtual_tokens rows (num_transformer_submodules = 2) that prompt tuning never reads; here it is
set to 1, so every trainable row is used and the count is num_virtual_tokens * d_model on every
architecture.

Initialisation (the paper's ablation: sampled vocabulary and class labels beat random): 'vocab' copies
the embeddings of randomly sampled vocabulary tokens, 'text' the embeddings of init_text's tokens
(repeated or cut to num_virtual_tokens; the tokenizer is loaded from the model's name_or_path),
'random' draws N(0, 1), which can lie far off the embedding manifold.

Generation: peftlab's own decoder (models/decode.py) puts the soft prompt after a row's left padding,
right before its first token, with positions counted from there, so a padded batch generates exactly
what each prompt alone does (peft's generate puts the prompt before the padding and ignores
position_ids; tests/models/test_decode.py checks both equalities for every method).

Implemented with peft, so the saved adapter folder loads with ``peft.PeftModel.from_pretrained``.
"""

from __future__ import annotations

from typing import Literal

from peft import PromptTuningConfig as PeftPromptTuningConfig
from peft import PromptTuningInit
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods import peft_common
from peftlab.methods.base import Hook, Method

PEFT_INIT = {"random": PromptTuningInit.RANDOM, "vocab": PromptTuningInit.SAMPLE_VOCAB, "text": PromptTuningInit.TEXT}


class PromptTuningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_virtual_tokens: int = Field(20, ge=1, le=4096, description="Length of the soft prompt, in tokens.")
    init: Literal["random", "vocab", "text"] = Field(
        "vocab",
        description="Soft prompt initialisation: 'vocab' = embeddings of sampled vocabulary tokens, "
        "'text' = embeddings of init_text's tokens, 'random' = N(0, 1).",
    )
    init_text: str | None = Field(
        None,
        description="Text whose token embeddings initialise the prompt (init: text only), e.g. the task instruction.",
    )

    @model_validator(mode="after")
    def _text_iff_init_text(self):
        if (self.init == "text") != (self.init_text is not None):
            raise ValueError("init_text is required with init: text, and only used with it")
        return self


def _tokenizer_source(model: nn.Module, cfg: PromptTuningConfig) -> str | None:
    # peft tokenizes init_text itself, loading the tokenizer by name: the model's own source.
    if cfg.init != "text":
        return None
    source = getattr(model, "name_or_path", "") or ""
    if not source:
        raise PeftlabError(
            "method.init: 'text' needs a model loaded from a folder or hub id (its tokenizer "
            "tokenizes init_text); this model has none; use init: vocab or init: random"
        )
    return source


def peft_config(model: nn.Module, cfg: PromptTuningConfig) -> PeftPromptTuningConfig:
    return PeftPromptTuningConfig(
        num_virtual_tokens=cfg.num_virtual_tokens,
        prompt_tuning_init=PEFT_INIT[cfg.init],
        prompt_tuning_init_text=cfg.init_text,
        tokenizer_name_or_path=_tokenizer_source(model, cfg),
        num_transformer_submodules=1,  # one prompt, before the (encoder) input; see the module docstring
        task_type=peft_common.task_type(model),
    )


METHOD = Method(
    name="prompt_tuning",
    paper="Lester, Al-Rfou & Constant, 2021. The Power of Scale for Parameter-Efficient Prompt Tuning. "
    "arXiv:2104.08691.",
    config_cls=PromptTuningConfig,
    hooks=frozenset({Hook.INPUT_EMBEDDINGS}),
    # Soft prompts need large steps (the paper used 0.3 with Adafactor); 3e-2 suits AdamW.
    default_lr=3e-2,
    apply=peft_common.make_apply(peft_config),
    save=peft_common.save,
    load=peft_common.load,
    peft_config=peft_config,
    added_markers=("prompt_encoder",),
    no_decay=("*prompt_encoder.*.embedding.weight",),  # decay would pull the prompt off the embedding manifold
)
