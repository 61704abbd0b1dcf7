"""Checks every method must pass, on every tiny architecture. Each method's test file calls these.

misfits()                              -> {(arch, method): why it does not apply} over the registry
setup(arch, name, **options)           -> (backbone, method, options) with the method applied; a method
                                          that does not apply to arch (Method.applies_to) skips the test,
                                          with the reason (tests/methods/test_every_method.py pins the set)
train_steps(bb, steps, lr)             -> (first loss, loss after training) on a fixed batch
changed_parameters(bb, lr)             -> names of parameters that one optimizer step changed
save_load_max_diff(arch, name, tmp)    -> max |logits| difference after save -> load on a fresh base
plain_peft_max_diff(arch, name, tmp)   -> the same, loading the folder with plain peft
logits_unchanged_by_apply(arch, name)  -> True when the untrained method leaves the logits bit-identical
"""

from __future__ import annotations

import torch

from peftlab.methods import REGISTRY, get_method, trainable_parameters
from peftlab.models.backbone import Backbone
from peftlab.models.seq2seq import SEQ2SEQ
from peftlab.models.tiny import EOS, PAD, TINY_MODELS, tiny_model
from tests.conftest import fixed_batch


def misfits(archs: tuple[str, ...] = TINY_MODELS) -> dict[tuple[str, str], str]:
    """{(arch, method name): the reason} for every registered method that does not apply to a tiny model."""
    found = {}
    for arch in archs:
        model, _ = tiny_model(arch)
        for name, method in REGISTRY.items():
            reason = method.applies_to(model)
            if reason is not None:
                found[(arch, name)] = reason
    return found


def setup(arch: str, name: str, **options):
    model, tok = tiny_model(arch)
    method = get_method(name)
    reason = method.applies_to(model)
    # Callers generate only the pairs that fit (``misfits``; test_every_method.py pins which do not): a
    # misfit here is a test that asked for a pair it should not have, so it fails rather than skips.
    assert reason is None, (
        f"{name} does not apply to {arch}: {reason}; leave the pair out (tests.methods.harness.misfits)"
    )
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
    """The model's logits for ``batch``, without asking the model for a loss (as peftlab's loop: a
    model loaded for inference with peft's AdaLoRA fails computing its regulariser into one)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        if "labels" in batch and model.config.is_encoder_decoder:
            return SEQ2SEQ.decoder_logits(model, batch["labels"], **inputs)
        return model(**inputs).logits


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


def plain_peft_max_diff(arch: str, name: str, tmp_path, lr: float = 1e-2, **options) -> float:
    """Train, save with the method, load the folder with plain ``peft.PeftModel.from_pretrained``:
    max |logits| difference (peft-backed methods keep peft's folder format)."""
    from peft import PeftModel

    bb, method, _ = setup(arch, name, **options)
    train_steps(bb, 3, lr)
    batch = fixed_batch(bb)
    method.save(bb.model, tmp_path / "adapter")
    fresh, _ = tiny_model(arch)
    peft_model = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter")).eval()
    return (logits(peft_model, batch) - logits(bb.model, batch)).abs().max().item()


def logits_unchanged_by_apply(arch: str, name: str, **options) -> bool:
    base, tok = tiny_model(arch)
    batch = fixed_batch(Backbone(model=base, tokenizer=tok, source=arch))
    ref = logits(base, batch)
    bb, _, _ = setup(arch, name, **options)
    bb.model.eval()
    return torch.equal(ref, logits(bb.model, batch))


# ---- generation checks (soft prompts and prefixes change what generate must do) ----------------
def greedy_by_hand(bb, prompt: str, max_new_tokens: int = 6) -> list[int]:
    """New token ids of greedy decoding with a full forward pass per token: no cache, no padding."""
    ids = torch.tensor([bb.prompt_ids(prompt)])
    seq = torch.tensor([[PAD]]) if bb.is_seq2seq else ids  # T5's decoder starts from PAD
    with torch.no_grad():
        for _ in range(max_new_tokens):
            if bb.is_seq2seq:
                out = bb.model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=seq)
            else:
                out = bb.model(input_ids=seq, attention_mask=torch.ones_like(seq))
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, token], dim=1)
            if token.item() == EOS:
                break
    return seq[0, 1 if bb.is_seq2seq else ids.shape[1] :].tolist()


def generated_ids(bb, prompt: str, max_new_tokens: int = 6) -> list[int]:
    """New token ids from peftlab's decoder (KV cache, one unpadded prompt), up to and including EOS."""
    return bb.generate_ids(bb.model, [prompt], max_new_tokens=max_new_tokens)[0]


def by_hand_text(bb, prompt: str) -> str:
    return bb.tokenizer.decode(greedy_by_hand(bb, prompt), skip_special_tokens=True).strip()
