"""Checks every method must pass, on every tiny architecture. Each method's test file calls these.

    setup(arch, name, **options)           -> (backbone, method, options) with the method applied
    train_steps(bb, steps, lr)             -> (first loss, loss after training) on a fixed batch
    changed_parameters(bb, lr)             -> names of parameters that one optimizer step changed
    save_load_max_diff(arch, name, tmp)    -> max |logits| difference after save -> load on a fresh base
    logits_unchanged_by_apply(arch, name)  -> True when the untrained method leaves the logits bit-identical
"""

from __future__ import annotations

import torch

from peftlab.methods import get_method, trainable_parameters
from peftlab.models.backbone import Backbone
from peftlab.models.tiny import tiny_model
from tests.conftest import fixed_batch


def setup(arch: str, name: str, **options):
    model, tok = tiny_model(arch)
    method = get_method(name)
    cfg = method.config_cls(**options)
    model = method.apply(model, cfg)
    return Backbone(model=model, tokenizer=tok, source=arch), method, cfg


def train_steps(bb: Backbone, steps: int, lr: float) -> tuple[float, float]:
    batch = fixed_batch(bb)
    opt = torch.optim.AdamW(trainable_parameters(bb.model).values(), lr=lr)
    bb.model.train()
    first = None
    for _ in range(steps):
        loss = bb.model(**batch).loss
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()
    bb.model.eval()
    with torch.no_grad():
        return first, bb.model(**batch).loss.item()


def changed_parameters(bb: Backbone, lr: float) -> set[str]:
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    train_steps(bb, 1, lr)
    return {n for n, p in bb.model.named_parameters() if not torch.equal(p, before[n])}


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def save_load_max_diff(arch: str, name: str, tmp_path, lr: float = 1e-2, **options) -> float:
    bb, method, cfg = setup(arch, name, **options)
    train_steps(bb, 3, lr)
    batch = fixed_batch(bb)
    ref = logits(bb.model, batch)
    method.save(bb.model, tmp_path / "adapter")
    saved = {p.suffix for p in (tmp_path / "adapter").rglob("*") if p.is_file()}
    assert saved <= {".safetensors", ".json", ".md"}, f"adapters are safetensors + JSON only, got {saved}"
    fresh, _ = tiny_model(arch)
    loaded = method.load(fresh, tmp_path / "adapter", cfg).eval()
    return (logits(loaded, batch) - ref).abs().max().item()


def logits_unchanged_by_apply(arch: str, name: str, **options) -> bool:
    base, tok = tiny_model(arch)
    batch = fixed_batch(Backbone(model=base, tokenizer=tok, source=arch))
    ref = logits(base, batch)
    bb, _, _ = setup(arch, name, **options)
    bb.model.eval()
    return torch.equal(ref, logits(bb.model, batch))
