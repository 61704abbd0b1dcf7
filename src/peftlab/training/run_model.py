"""The model a run trains: the backbone loaded in the run's precision, the method applied, and the
base model's loss on the forgetting sample taken before the method changes anything."""

from __future__ import annotations

import math

from peftlab.console import console
from peftlab.cpu_allocator import hold_mmap_threshold
from peftlab.measure import forgetting
from peftlab.measure.precision import run_dtypes, store_frozen_linears
from peftlab.methods.base import Method
from peftlab.models.backbone import Backbone
from peftlab.models.loading import load_as_trained
from peftlab.models.swiglu import lean_swiglu
from peftlab.training.run import Run


def load_model(
    run: Run, method: Method, options, allow_unsafe_pickle: bool, forgetting_texts: list[str]
) -> tuple[Backbone, float]:
    """The backbone with the method applied (``backbone.model``: only the method's parameters train),
    and the base model's LM loss on ``forgetting_texts`` (forgetting.py), measured before the method is
    applied: an untrained soft prompt already changes it (nan without texts)."""
    cfg = run.cfg
    if cfg.train.release_memory:
        hold_mmap_threshold()  # before the model loads: every large tensor from here on is mapped
    # fp32 master weights for model.dtype auto, the matmuls in train.precision's dtype: the same
    # function re-loads the finished run (evaluate.load_run), so re-evaluation reproduces the test score
    backbone = load_as_trained(
        cfg.model,
        cfg.train.precision,
        device=run.accelerator.device,
        log=console.print,
        allow_unsafe_pickle=allow_unsafe_pickle,
        quantization=method.quantization(options, run_dtypes(cfg.model.dtype, cfg.train.precision, "cpu")[0]),
    )
    before = math.nan
    if forgetting_texts and run.main:
        before = forgetting.base_loss(
            cfg,
            str(backbone.compute_dtype),
            lambda: forgetting.lm_loss(
                backbone, backbone.model, forgetting_texts, cfg.forgetting.max_tokens, label="forgetting: base model"
            ),
        )
    prepare(backbone, method, options, cfg.train.gradient_checkpointing)
    return backbone, before


def prepare(backbone: Backbone, method: Method, options, gradient_checkpointing: bool) -> None:
    """The loaded model made the one a run trains (and compare's probe times): the method applied, and
    what changes memory or speed but not a bit of the results."""
    if gradient_checkpointing:
        # Recompute each layer's activations in backward: less memory for ~1/3 more compute. Non-reentrant
        # checkpointing needs no input that requires grad, so frozen embeddings (every PEFT method) work.
        backbone.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    lean_swiglu(backbone.model)  # a third less MLP activation memory, the same bits
    backbone.model = method.apply(backbone.model, options)
    store_frozen_linears(backbone.model, backbone.compute_dtype)  # same numerics, no recast per forward
