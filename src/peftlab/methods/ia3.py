"""(IA)^3: Infused Adapter by Inhibiting and Amplifying Inner Activations (Liu et al., 2022,
"Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning",
arXiv:2205.05638).

Learned vectors rescale activations elementwise: l_k and l_v rescale the attention keys and
values (the *outputs* of the targeted projections), l_ff rescales the intermediate activation of
the feed-forward block (the *input* of its down projection, so a "feedforward module" is the down
projection). The vectors start at ones, so until the first
update the model is exactly the base model.

Defaults (target_modules / feedforward_modules = None) are peft's per-architecture tables, which
cover the three families peftlab supports (peft 0.21):
  T5:      k, v, wo (ff: wo)                         -- the paper's choice (it used T0, a T5)
  Llama:   k_proj, v_proj, down_proj (ff: down_proj) -- the paper's choice
  GPT-Neo: q_proj, v_proj, c_proj (ff: c_proj)       -- peft scales q_proj here, not k_proj
Pass target_modules to choose others (e.g. [k_proj, v_proj, c_proj] for the paper's choice on GPT-Neo).

Implemented with peft, so the saved adapter folder loads with ``peft.PeftModel.from_pretrained``.
"""

from __future__ import annotations

from peft import IA3Config as PeftIA3Config
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from peftlab.methods import peft_common
from peftlab.methods.base import Hook, Method


class IA3Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_modules: list[str] | str | None = Field(
        None,
        description="Module names whose activations are rescaled (a list, a regex, or 'all-linear'); None = peft's "
        "defaults per architecture (T5: k, v, wo; Llama: k_proj, v_proj, down_proj; GPT-Neo: q_proj, v_proj, c_proj).",
    )
    feedforward_modules: list[str] | None = Field(
        None,
        description="Which targeted modules are feed-forward down projections, scaled on their input (l_ff) "
        "instead of their output; a subset of target_modules. None = peft's defaults (T5: wo; Llama: "
        "down_proj; GPT-Neo: c_proj).",
    )

    @model_validator(mode="after")
    def _feedforward_within_targets(self):
        # peft checks this too, but only deep inside apply; here it is an options error with a name.
        if isinstance(self.target_modules, list) and self.feedforward_modules is not None:
            extra = sorted(set(self.feedforward_modules) - set(self.target_modules))
            if extra:
                raise ValueError(f"feedforward_modules must be a subset of target_modules; not targeted: {extra}")
        return self


def peft_config(model: nn.Module, cfg: IA3Config) -> PeftIA3Config:
    # None is passed through: peft fills in its table for model.config.model_type.
    return PeftIA3Config(
        target_modules=cfg.target_modules,
        feedforward_modules=cfg.feedforward_modules,
        init_ia3_weights=True,  # ones: the model starts as the base model
        task_type=peft_common.task_type(model),
    )


METHOD = Method(
    name="ia3",
    paper="Liu et al., 2022. Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than "
    "In-Context Learning. arXiv:2205.05638.",
    config_cls=IA3Config,
    hooks=frozenset({Hook.LINEAR_WRAP}),
    default_lr=3e-3,
    # get_peft_model freezes the base and leaves only the ia3_l vectors trainable.
    apply=peft_common.make_apply(peft_config),
    save=peft_common.save,
    load=peft_common.load,
    # Not zero but ones: the point is the same, the untrained method leaves the logits unchanged.
    zero_init=True,
    added_markers=("ia3_",),
    no_decay=("*.ia3_l.*",),  # scaling vectors start at one: decay would pull them towards switching off
    mergeable=True,
    peft_config=peft_config,
)
