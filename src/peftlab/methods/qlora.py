"""QLoRA: LoRA on a frozen base model quantized to 4-bit NormalFloat (Dettmers et al., 2023,
"QLoRA: Efficient Finetuning of Quantized LLMs", arXiv:2305.14314).

Every Linear layer of the base model except the output head (and the layers the model keeps in
fp32, as transformers does) becomes a bitsandbytes ``Linear4bit``
holding NF4 weights (the paper's data type; ``double_quant`` also quantizes the quantization
constants, its section 3), computed in the run's dtype; LoRA's lora_A / lora_B train on top in full
precision, exactly as the ``lora`` method, through peft (which wraps ``Linear4bit`` layers itself).
The base loads straight into NF4, tensor by tensor (``quantization_config``): a full-precision model
never exists, so the training peak shows the saving (bench/RESULTS.md, "QLoRA loads in 4 bits").
What it buys is memory: the frozen weights take about a quarter of their fp16 bytes. What it may
cost is quality (the weights are rounded) and time (each matmul dequantizes its weight first):
compare it with ``lora`` at the same budget.

bitsandbytes runs NF4 on CPU since its multi-backend releases (0.45+); it is an optional dependency
(``pip install peftlab[qlora]``). Models built in code (the tiny test models) have no file to load
quantized: ``quantize`` replaces their Linear layers after the fact, with the same bits. The base model
is loaded quantized again when a saved adapter is loaded; the adapter is a peft LoRA folder. Merging is
refused: folding lora_B @ lora_A into rounded weights would change them.

FLOPs: ``Linear4bit`` is an nn.Linear, so its matmul is counted like any other; the dequantization
before it (elementwise) is not, as no elementwise work is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model
from pydantic import Field
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods import lora
from peftlab.methods.base import Hook, Method


class QLoraConfig(lora.LoraConfig):
    double_quant: bool = Field(True, description="Quantize the quantization constants too (the paper's default).")


def _bitsandbytes():
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PeftlabError("method qlora needs bitsandbytes: pip install 'peftlab[qlora]' (or bitsandbytes>=0.45)")
    import bitsandbytes

    return bitsandbytes


def quantization_config(cfg: QLoraConfig, dtype: torch.dtype):
    """The base model's load straight into NF4 (models/loading.py), tensor by tensor: a full-precision
    copy never exists, so the run's peak memory shows what QLoRA saves. Same layers, same bits as
    ``quantize`` (tests/methods/test_qlora.py): transformers, like it, keeps the output head and the
    model's _keep_in_fp32_modules unquantized."""
    _bitsandbytes()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=dtype,
    )


def quantize(model: nn.Module, double_quant: bool) -> nn.Module:
    """Every Linear but the output head as an NF4 ``Linear4bit`` holding the same weights; a model that
    loaded quantized (``quantization_config``) keeps its layers, which get the same numerics."""
    bnb = _bitsandbytes()
    ref = next(p for p in model.parameters() if p.is_floating_point())
    if getattr(model, "hf_quantizer", None) is None:
        _replace_linears(model, double_quant, bnb, ref)
    for q in model.modules():
        if isinstance(q, bnb.nn.Linear4bit):
            _same_numerics_everywhere(q, ref.dtype)
    model.peftlab_quantized = "nf4"
    return model


def _replace_linears(model: nn.Module, double_quant: bool, bnb, ref: torch.Tensor) -> None:
    """For a model built in code (no file to load quantized): each Linear quantized from its weights."""
    head = model.get_output_embeddings()
    # As transformers' own quantized loading: the model's _keep_in_fp32_modules stay unquantized (T5's
    # FFN output `wo`: T5 casts its input to that weight's dtype, which NF4 storage would make uint8).
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    targets = [
        (n, m)
        for n, m in model.named_modules()
        if type(m) is nn.Linear and m is not head and n.rpartition(".")[2] not in keep
    ]
    for name, linear in targets:
        q = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            compute_dtype=ref.dtype,
            compress_statistics=double_quant,
            quant_type="nf4",
        )
        q.load_state_dict(linear.state_dict())
        q = q.to(ref.device)  # quantizes the weight (bitsandbytes does it on the move to a device)
        q.requires_grad_(False)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, q)


def _same_numerics_everywhere(q: nn.Module, dtype: torch.dtype) -> None:
    # On CPUs with AVX512-BF16, bitsandbytes (0.50) repacks the weight in place on the first
    # no-grad forward in eval mode and from then on computes in bf16 whatever compute_dtype says:
    # evaluation would run in other numerics than training, differ between machines, and fail on
    # layers narrower than its 64-wide blocks. Kept on the path every CPU shares.
    q.support_avx512bf16_for_cpu = False
    q.peftlab_dtype = dtype
    q.register_forward_pre_hook(_compute_in_autocast_dtype)
    q.register_forward_hook(_output_in_autocast_dtype)


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None


def _compute_in_autocast_dtype(module: nn.Module, args: tuple) -> None:
    """bitsandbytes' matmul is not an autocast op: under train.precision bf16 it must be told to compute
    in bf16, as autocast makes every nn.Linear do (peftlab/precision.py); else in the weights' dtype."""
    module.compute_dtype = _autocast_dtype(args[0]) or module.peftlab_dtype


def _output_in_autocast_dtype(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    """Linear4bit returns its input's dtype; an autocast nn.Linear returns the autocast dtype."""
    dtype = _autocast_dtype(args[0])
    return output.to(dtype) if dtype is not None else None


def apply(model: nn.Module, cfg: QLoraConfig) -> nn.Module:
    model = quantize(model, cfg.double_quant)
    with torch.no_grad():
        model = get_peft_model(model, lora.peft_config(model, cfg))
    # LoRA's speed options: the dropout folds where peft wraps the 4-bit base in its plain LoRA layer
    # (on CPU); a layer of peft's own 4-bit class keeps its dropout module, drawn by fast_dropout;
    # fused_add leaves a 4-bit base (not an nn.Linear) on peft's forward
    return lora.speed_options(model, cfg)


def load(base: nn.Module, folder: Path, cfg: QLoraConfig) -> nn.Module:
    return PeftModel.from_pretrained(quantize(base, cfg.double_quant), str(folder), is_trainable=False)


def save(model: nn.Module, folder: Path) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)


METHOD = Method(
    name="qlora",
    paper="Dettmers et al., 2023. QLoRA: Efficient Finetuning of Quantized LLMs. arXiv:2305.14314.",
    config_cls=QLoraConfig,
    hooks=frozenset({Hook.LINEAR_WRAP}),
    default_lr=1e-3,
    apply=apply,
    save=save,
    load=load,
    load_quantized=quantization_config,
    zero_init=True,
    added_markers=("lora_",),
)
