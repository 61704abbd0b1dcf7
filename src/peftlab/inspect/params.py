"""Where a method's parameters are: total, added and trainable parameters per module group, and the
adapter's size on disk, measured by applying the method to a fresh model (nothing is trained).

    method_params(model_name, method_cfg) -> {"groups": [...], "trainable", "total", "adapter_bytes", ...}
    all_methods(model_name)               -> one such dict per registered method, default options

Groups come from parameter names (Llama, GPT-Neo and T5 naming): embeddings, attention, mlp, norms,
head, virtual tokens (prompt / prefix tuning), other. A method's new tensors count where they sit
(a LoRA matrix of q_proj under attention, a parallel adapter beside the FFN under mlp) and are also
counted as "added". A tied output head (SmolLM2, GPT-Neo) is the input embedding: counted once,
under embeddings, as ``count_parameters`` and summary.json count it.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import torch
from rich.table import Table
from torch import nn

from peftlab.config import MethodConfig, ModelConfig
from peftlab.console import console
from peftlab.humanize import human_bytes
from peftlab.measure.cost import dir_bytes
from peftlab.methods import REGISTRY, Method, count_parameters, get_method, method_options
from peftlab.methods.registry import misfit
from peftlab.models import arch, load_backbone

GROUPS = ("embeddings", "attention", "mlp", "norms", "head", "virtual tokens", "other")
_RULES = (  # first match wins: norms before attention (Llama's post_attention_layernorm)
    ("virtual tokens", re.compile(r"(^|\.)prompt_encoder\.")),
    ("norms", re.compile(r"norm|(^|\.)ln_")),
    ("head", re.compile(rf"(^|\.)({'|'.join(arch.HEAD_PARTS)})\.")),
    ("attention", re.compile("|".join(arch.ATTENTION_PARTS), re.IGNORECASE)),
    ("mlp", re.compile(rf"(^|\.)({'|'.join(arch.FFN_PARTS)})\.")),
    ("embeddings", re.compile(rf"(^|\.)({'|'.join(arch.EMBEDDING_PARTS)})\.")),
)


def group_of(name: str) -> str:
    for group, pattern in _RULES:
        if pattern.search(name):
            return group
    return "other"


def group_counts(model: nn.Module, method: Method) -> dict[str, dict[str, int]]:
    """{group: {total, added, trainable}}; shared tensors once (named_parameters skips repeats).
    Added: the tensors ``method`` adds (its ``added_markers``)."""
    out = {g: {"total": 0, "added": 0, "trainable": 0} for g in GROUPS}
    for name, p in model.named_parameters():
        row = out[group_of(name)]
        row["total"] += p.numel()
        row["added"] += p.numel() if method.adds(name) else 0
        row["trainable"] += p.numel() if p.requires_grad else 0
    return out


def _tied_head(model: nn.Module) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head, emb = base.get_output_embeddings(), base.get_input_embeddings()
    return head is not None and emb is not None and head.weight is emb.weight


def method_params(model_name: str, method_cfg: MethodConfig) -> dict:
    """Apply the method (with its options) to a fresh CPU copy of the model, count, save, measure."""
    method = get_method(method_cfg.name)
    options = method_options(method_cfg)
    torch.manual_seed(0)  # methods with random init (LoRA's A, soft prompts) are reproducible
    backbone = load_backbone(
        ModelConfig(name=model_name, dtype="float32"), device=torch.device("cpu"), log=lambda *_: None
    )
    model = method.apply(backbone.model, options)
    trainable, total = count_parameters(model)
    groups = group_counts(model, method)
    with tempfile.TemporaryDirectory() as tmp:
        method.save(model, Path(tmp) / "adapter")
        adapter_bytes = dir_bytes(Path(tmp) / "adapter")
    return {
        "model": model_name,
        "method": method_cfg.name,
        "options": options.model_dump(mode="json"),
        "trainable": trainable,
        "total": total,
        "trainable_pct": 100 * trainable / total,
        "added": sum(g["added"] for g in groups.values()),
        "adapter_bytes": adapter_bytes,
        "tied_head": _tied_head(model),
        "groups": groups,
    }


def all_methods(model_name: str, progress=None) -> list[dict]:
    """One row per registered method that applies to the model; each one that does not (BitFit on a
    model without biases) is said on the console with its reason instead of failing the table."""
    skeleton = load_backbone(
        ModelConfig(name=model_name, dtype="float32"), device=torch.device("cpu"), log=lambda *_: None
    ).model
    rows = []
    for name in REGISTRY:
        reason = misfit(get_method(name), skeleton, model_name)
        if reason is not None:
            console.print(f"skipped {reason}")
        else:
            rows.append(method_params(model_name, MethodConfig(name=name)))
        if progress is not None:
            progress(name)
    return rows


def print_method_params(result: dict) -> None:
    table = Table(title=f"{result['model']} + {result['method']}: parameters by module group")
    for col in ("group", "total", "added by method", "trainable"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for group, row in result["groups"].items():
        if row["total"]:
            label = group + (" (tied: counted under embeddings)" if group == "head" and result["tied_head"] else "")
            table.add_row(label, f"{row['total']:,}", f"{row['added']:,}", f"{row['trainable']:,}")
    if result["tied_head"] and not result["groups"]["head"]["total"]:
        table.add_row("head (tied to the input embeddings)", "0", "0", "0")
    table.add_row(
        "[bold]all[/bold]",
        f"[bold]{result['total']:,}[/bold]",
        f"[bold]{result['added']:,}[/bold]",
        f"[bold]{result['trainable']:,}[/bold]",
    )
    console.print(table)
    console.print(
        f"trainable {result['trainable_pct']:.3f}% · adapter on disk {human_bytes(result['adapter_bytes'])} "
        f"({result['adapter_bytes']:,} bytes) · options {result['options']}"
    )


def print_all_methods(rows: list[dict]) -> None:
    table = Table(title=f"{rows[0]['model']}: every method with its default options")
    for col in ("method", "trainable", "total", "train %", "added", "adapter", "trainable in"):
        table.add_column(col, justify="left" if col in ("method", "trainable in") else "right")
    for r in rows:
        where = ", ".join(g for g, c in r["groups"].items() if c["trainable"]) or "-"
        table.add_row(
            r["method"],
            f"{r['trainable']:,}",
            f"{r['total']:,}",
            f"{r['trainable_pct']:.2f}%",
            f"{r['added']:,}",
            human_bytes(r["adapter_bytes"]),
            where,
        )
    console.print(table)
