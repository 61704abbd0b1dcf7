"""LoRA: Low-Rank Adaptation (Hu et al., 2021, arXiv:2106.09685).

Each targeted Linear W gets a parallel low-rank update W + (alpha / rank) * lora_B @ lora_A,
with lora_B initialised to zero (paper section 4.1) so training starts from the base model.
rsLoRA (Kalajdzievski, 2023: scale alpha / sqrt(rank)) and DoRA (Liu et al., 2024: weight
decomposed into magnitude and direction) are peft options passed through.

Implemented with peft, so the saved adapter folder loads with ``peft.PeftModel.from_pretrained``.
With dropout > 0, each adapted projection's dropout is folded into its lora_A (methods/lora_dropout.py):
the same bits, without a dropped copy of the input kept per projection for backward. In training the
update is added to the frozen output inside one GEMM (methods/lora_fused_add.py).
"""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from peftlab.methods import peft_common
from peftlab.methods.base import Hook, Method
from peftlab.methods.lora_dropout import fast_lora_dropout, fuse_lora_dropout
from peftlab.methods.lora_fused_add import fuse_lora_add


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rank: int = Field(16, ge=1, le=4096, description="Rank r of lora_A (r x in) and lora_B (out x r).")
    alpha: float = Field(32.0, gt=0, description="Scaling numerator: the update is scaled by alpha / rank.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA branch input.")
    target_modules: list[str] | str = Field(
        "all-linear",
        description="Module names to adapt; 'all-linear' = every Linear except the output head "
        "(q/k/v/o and MLP projections on Llama, q/k/v/o/wi/wo on T5, attention and c_fc/c_proj on GPT-Neo).",
    )
    use_rslora: bool = Field(False, description="rsLoRA scaling alpha / sqrt(rank).")
    use_dora: bool = Field(False, description="DoRA: weight-decomposed LoRA.")
    fused_dropout: bool = Field(
        True,
        description="Fold the dropout into lora_A (methods/lora_dropout.py): backward replays the dropout "
        "instead of keeping a dropped copy of the input per projection. Same losses to the bit; on SmolLM2 "
        "about 0.7 GB less at a step's peak. With torch's draw the replay made steps about 20% slower on a "
        "2-core CPU; with fast_dropout it costs nothing measurable (bench/RESULTS.md). On by default since "
        "2026-12-07 (a run config written before then, without the key, reads as off).",
    )

    fused_add: bool = Field(
        True,
        description="In training, add the update to the frozen projection's output inside one GEMM "
        "(torch.addmm: base(x) + scaling * h @ lora_B^T; methods/lora_fused_add.py) instead of peft's three "
        "passes over an output-sized tensor (matmul, scale, add). Evaluation and generation keep peft's "
        "forward. With a power-of-two alpha / rank (the default gives 2) the same losses to the bit on the "
        "CPUs measured, otherwise the same up to rounding; faster fp32 CPU steps (bench/RESULTS.md). On by "
        "default since 2026-12-07 (a run config written before then, without the key, reads as off).",
    )
    fast_dropout: bool = Field(
        True,
        description="Draw the dropout masks as 16-bit random integers, four to each 64-bit draw "
        "(methods/lora_dropout.keep_mask; p rounded to 1/65536), instead of torch's bernoulli_, which on CPU "
        "costs a generator call per element: the same Bernoulli(p) noise, another random stream (so not "
        "peft's bits), faster CPU steps. A paired check on text-to-SQL (3 seeds) found no difference "
        "in quality: +0.016 execution accuracy, 95% interval [-0.049, 0.080] (bench/RESULTS.md). On by "
        "default since 2026-12-07 (a run config written before then, without the key, reads as off); "
        "false gives torch's draw, peft's bits.",
    )


def peft_config(model: nn.Module, cfg: LoraConfig) -> PeftLoraConfig:
    return PeftLoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
        task_type=peft_common.task_type(model),
    )


_peft_apply = peft_common.make_apply(peft_config)


def apply(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """get_peft_model, then LoRA's speed options (``speed_options``; all on by default)."""
    return speed_options(_peft_apply(model, cfg), cfg)


def speed_options(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """fused_dropout, fast_dropout and fused_add on a model peft has wrapped (qlora's too): the dropouts
    that fold into their lora_A fold, with fast_dropout every mask, folded or not, comes from keep_mask,
    and with fused_add the plain LoRA Linears add their update inside one GEMM in training. The
    dropouts come first: folding looks for peft's own Linear class, which fused_add changes."""
    if cfg.fused_dropout:
        fuse_lora_dropout(model, fast=cfg.fast_dropout)
    if cfg.fast_dropout:
        fast_lora_dropout(model)  # the ones left: DoRA's, quantized layers', or all without fused_dropout
    if cfg.fused_add:
        fuse_lora_add(model)  # a quantized base layer is not an nn.Linear: peft's forward, unchanged
    return model


METHOD = Method(
    name="lora",
    paper="Hu et al., 2021. LoRA: Low-Rank Adaptation of Large Language Models. arXiv:2106.09685.",
    config_cls=LoraConfig,
    hooks=frozenset({Hook.LINEAR_WRAP}),
    default_lr=1e-3,
    # get_peft_model freezes the base and leaves only lora_A / lora_B trainable.
    apply=apply,
    save=peft_common.save,
    load=peft_common.load,
    zero_init=True,
    added_markers=("lora_",),  # lora_A, lora_B, lora_magnitude_vector (DoRA), lora_embedding_*
    mergeable=True,
    peft_config=peft_config,
    after_peft=speed_options,  # a hybrid injects LoRA's layers itself, then applies the same options
)
