"""What AdaLoRA needs from the training loop (Zhang et al., 2023, "Adaptive Budget Allocation for
Parameter-Efficient Fine-Tuning", ICLR, arXiv:2303.10512); the method itself is peft's, run through
``{name: peft, type: ADALORA, total_step: N, ...}`` (methods/peft_tuner.py).

AdaLoRA parameterizes each update as P Λ Q (peft: lora_A, lora_E, lora_B) and moves rank between
layers while training. Two things live outside the model's forward:

- the rank allocator: after every optimizer step, while the gradients are still there, peft's
  ``update_and_allocate(step)`` updates each singular value's importance (|w * grad|, smoothed) and
  masks the least important ones down to the scheduled budget (from ``init_r`` per layer to
  ``target_r`` by ``total_step - tfinal``, cubically after ``tinit`` steps);
- the orthogonal regulariser ``orth_reg_weight * mean ||PᵀP - I||_F`` (paper eq. 4), which peft adds
  inside its forward only to a loss the model computed from labels. peftlab computes its loss from
  the logits itself (token sums, so micro-batches and processes add up exactly), so the regulariser
  is computed here, as peft's forward does, and added to the step's loss once.

``total_step`` is AdaLoRA's own option and must be given: the schedule needs it before training,
and with a FLOP or token budget only the run knows its step count (run it once, or divide the
budget by ``flops_per_step`` from a short run). For exact resume, the allocator's importance
averages and the rank pattern are saved in the checkpoint beside the weights. The weights kept as
the best on validation come from steps after the final allocation only: earlier ones hold more rank
than the budget (and peft would save them pruned to the final pattern, a model never validated).
"""

from __future__ import annotations

import torch
from peft.tuners.adalora import AdaLoraModel
from torch import nn

from peftlab.methods.base import LoopHooks


def _tuner(model: nn.Module) -> AdaLoraModel | None:
    inner = getattr(model, "base_model", None)
    return inner if isinstance(inner, AdaLoraModel) else None


def orthogonal_regularizer(tuner: AdaLoraModel) -> torch.Tensor:
    """orth_reg_weight * the mean over lora_A / lora_B of ||P Pᵀ - I||_F (A) or ||Pᵀ P - I||_F (B)."""
    name = tuner.trainable_adapter_name
    weight = tuner.peft_config[name].orth_reg_weight
    terms = []
    for n, p in tuner.model.named_parameters():
        if ("lora_A" in n or "lora_B" in n) and name in n:
            cov = p @ p.T if "lora_A" in n else p.T @ p
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype)))
    if not terms:
        return torch.zeros(())
    return weight * torch.stack(terms).mean()


def _state(tuner: AdaLoraModel) -> dict[str, torch.Tensor]:
    alloc = tuner.rankallocator
    out = {}
    for kind in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
        out |= {f"{kind}/{n}": t.detach().cpu().contiguous() for n, t in getattr(alloc, kind).items()}
    pattern = tuner.peft_config[tuner.trainable_adapter_name].rank_pattern or {}
    out |= {f"rank_pattern/{n}": torch.as_tensor(v, dtype=torch.bool).reshape(-1) for n, v in pattern.items()}
    return out


def _load_state(tuner: AdaLoraModel, tensors: dict[str, torch.Tensor]) -> None:
    alloc = tuner.rankallocator
    device = next(tuner.parameters()).device
    for kind in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
        setattr(
            alloc,
            kind,
            {k.split("/", 1)[1]: v.to(device) for k, v in tensors.items() if k.startswith(f"{kind}/")},
        )
    pattern = {k.split("/", 1)[1]: v.tolist() for k, v in tensors.items() if k.startswith("rank_pattern/")}
    tuner.peft_config[tuner.trainable_adapter_name].rank_pattern = pattern or None


def loop_hooks(model: nn.Module) -> LoopHooks | None:
    """The loop hooks of an AdaLoRA model (None for any other peft type)."""
    tuner = _tuner(model)
    if tuner is None:
        return None
    return LoopHooks(
        extra_loss=lambda: orthogonal_regularizer(tuner),
        after_optimizer_step=tuner.update_and_allocate,
        state=lambda: _state(tuner),
        load_state=lambda tensors: _load_state(tuner, tensors),
        selectable=lambda steps: _final(tuner, steps),
    )


def _final(tuner: AdaLoraModel, steps: int) -> bool:
    """Whether the rank budget is final after ``steps`` optimizer steps: before that the model holds
    more rank than target_r allows, and peft saves the final rank pattern whatever weights are kept."""
    config = tuner.peft_config[tuner.trainable_adapter_name]
    return steps > config.total_step - config.tfinal
