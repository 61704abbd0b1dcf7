"""peftlab's fast evaluation path must give the same greedy predictions as the plain one.

Fast: ``Backbone.generate`` (length-sorted batches, left padding for decoder-only models, KV cache,
peftlab's own decoding loop).
Plain: one prompt at a time through transformers' ``model.generate``, no padding at all (the
reference recipe; it is right for these plain and LoRA models, unlike for prompt learning).
The prompts differ a lot in length (byte tokenizer: one token per character), so batches really pad.
Token ids are compared as well as texts: on the tiny models' byte tokenizer many generated ids
(sentinels, stray UTF-8 bytes) decode to nothing, so equal texts alone would prove little.
"""

from __future__ import annotations

import pytest
import torch

from peftlab.methods import get_method
from peftlab.models.backbone import Backbone
from peftlab.models.tiny import EOS, PAD, tiny_model
from tests.conftest import ARCHS

PROMPTS = [
    "x",
    "Repeat: cat",
    "Summarize: the meeting moved to Friday.",
    "ok",
    "Translate to French: good morning, how are you today?",
    "Q: 2+2?",
    "A much longer prompt that goes on and on about rivers, stones, clouds and maple trees, " * 2,
    "Name three colours.",
    "#Person1#: Hello.\n#Person2#: Hi! Where were you yesterday? We waited for an hour.",
    "abc def ghi jkl",
    "List the employees of the sales department hired after 2015, ordered by salary, highest first.",
    "yes or no",
]
MAX_NEW_TOKENS = 12


def backbone(arch: str, lora: bool = False) -> Backbone:
    model, tok = tiny_model(arch)
    if lora:
        method = get_method("lora")
        model = method.apply(model, method.config_cls(rank=4)).eval()
        # lora_B starts at zero (the model would equal the base): give it a seeded random fill.
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return Backbone(model=model, tokenizer=tok, source=arch)


def until_eos(ids: list[int]) -> tuple[int, ...]:
    """New tokens up to and including the first EOS (a finished row of a batch continues with padding)."""
    return tuple(ids[: ids.index(EOS) + 1] if EOS in ids else ids)


def fast(bb: Backbone, batch_size: int) -> tuple[list[str], list[tuple[int, ...]]]:
    ids = bb.generate_ids(bb.model, PROMPTS, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size)
    return bb.texts(ids), [tuple(row) for row in ids]


def one_by_one(bb: Backbone) -> tuple[list[str], list[tuple[int, ...]]]:
    """The plain path: each prompt alone, the same prompt ids, greedy, no padding."""
    texts, new_ids = [], []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = torch.tensor([bb.prompt_ids(prompt)])
            out = bb.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                num_beams=1,
                pad_token_id=PAD,
                eos_token_id=EOS,
            )
            new = out[0, 1:] if bb.is_seq2seq else out[0, ids.shape[1] :]
            texts.append(bb.tokenizer.decode(new, skip_special_tokens=True).strip())
            new_ids.append(until_eos(new.tolist()))
    return texts, new_ids


@pytest.mark.parametrize("lora", [False, True], ids=["base", "lora"])
@pytest.mark.parametrize("batch_size", [16, 5])
@pytest.mark.parametrize("arch", ARCHS)
def test_fast_path_equals_one_by_one(arch, batch_size, lora):
    bb = backbone(arch, lora)
    fast_texts, fast_ids = fast(bb, batch_size)
    plain_texts, plain_ids = one_by_one(bb)
    # The check can fail: outputs are not empty and depend on the prompt.
    assert all(plain_ids) and len(set(plain_ids)) > len(PROMPTS) // 2, plain_ids
    diffs = [(i, f, p) for i, (f, p) in enumerate(zip(fast_ids, plain_ids)) if f != p]
    assert not diffs, f"{len(diffs)} of {len(PROMPTS)} differ; first (index, fast ids, plain ids): {diffs[0]}"
    assert fast_texts == plain_texts


def test_batches_really_pad():
    """The fast path really pads: one batch holds prompts of different lengths."""
    bb = backbone("tiny-llama")
    ids, mask = bb.pad_prompts([bb.prompt_ids(p) for p in PROMPTS])
    lengths = mask.sum(-1)
    assert len(set(lengths.tolist())) == len(PROMPTS) and int(lengths.max() - lengths.min()) > 100


@pytest.mark.parametrize("arch", ARCHS)
def test_comparison_catches_attention_to_padding(arch, monkeypatch):
    """Control: a batched path that lets the model attend to padding (attention mask of ones)
    generates something else, so the comparison above is able to fail."""
    bb = backbone(arch)
    pad_prompts = bb.pad_prompts
    monkeypatch.setattr(
        bb, "pad_prompts", lambda encoded: (pad_prompts(encoded)[0], torch.ones_like(pad_prompts(encoded)[1]))
    )
    assert fast(bb, 16)[1] != one_by_one(bb)[1]


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_fill_changes_predictions(arch):
    """The LoRA cases test something the base cases do not: the adapter changes what is generated."""
    assert one_by_one(backbone(arch))[1] != one_by_one(backbone(arch, lora=True))[1]
