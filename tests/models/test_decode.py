"""peftlab's own decoding loop (models/decode.py, models/beam.py) for every method on every tiny
architecture: the KV-cached greedy search equals greedy decoding by full forward passes, a padded
batch equals one prompt at a time, and beam search equals transformers' beam search where that is
right (plain models) and is batch-invariant where it is not (prompt learning).

Every registered method is covered by being registered; the hybrids add the prompt-learning pairings
that peft cannot build by itself.
"""

from __future__ import annotations

import pytest
import torch

from peftlab.methods import REGISTRY, get_method, trainable_parameters
from peftlab.models.beam import beam_search
from peftlab.models.causal import CausalDecoder
from peftlab.models.decode import greedy
from peftlab.models.forward import core_model
from peftlab.models.shared_prefix import MIN_SHARED
from peftlab.models.tiny import EOS, PAD
from tests.conftest import ARCHS
from tests.methods.harness import greedy_by_hand, misfits, setup, train_steps

PROMPTS = ["Repeat: cat", "Repeat: a much longer owl", "x", "Summarize: the meeting moved to Friday."]
LORA = {"name": "lora", "rank": 4, "dropout": 0.0}
CASES = [(name, {}) for name in REGISTRY] + [
    ("hybrid", {"methods": [LORA, {"name": "prompt_tuning"}]}),  # soft prompt + LoRA
    ("hybrid", {"methods": [LORA, {"name": "prefix_tuning"}]}),  # prefix + LoRA
    ("hybrid", {"methods": [LORA, {"name": "prefix_tuning"}, {"name": "series_adapter"}], "gates": True}),  # UniPELT
    ("peft", {"type": "P_TUNING", "num_virtual_tokens": 4, "encoder_hidden_size": 16}),  # peft's prompt encoder
]
IDS = [
    f"{name}-{'gated-' if opts.get('gates') else ''}{'+'.join(m['name'] for m in opts['methods'])}"
    if "methods" in opts
    else f"{name}-{opts['type']}"
    if opts
    else name
    for name, opts in CASES
]

# Every (architecture, case) whose method applies to the model: a misfit (BitFit on a model without
# biases) is not generated at all; tests/methods/test_every_method.py pins which pairs those are.
MISFITS = misfits(ARCHS)
PAIRS = [(a, c) for a in ARCHS for c in range(len(CASES)) if (a, CASES[c][0]) not in MISFITS]
PAIR_IDS = [f"{a}-{IDS[c]}" for a, c in PAIRS]


def trained(arch: str, name: str, options: dict):
    """The method applied and trained a few steps, so its parameters really change the output."""
    bb, method, cfg = setup(arch, name, **options)
    if trainable_parameters(bb.model):
        train_steps(bb, 3, method.lr(cfg))
    return bb


@pytest.fixture(scope="module")
def models():
    """One trained backbone per (arch, case), shared by the tests below."""
    cache = {}

    def get(arch, case):
        key = (arch, case)
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = trained(arch, *CASES[case])
        return cache[key]

    return get


@pytest.mark.parametrize(("arch", "case"), PAIRS, ids=PAIR_IDS)
def test_greedy_with_cache_equals_full_forward_passes(models, arch, case):
    bb = models(arch, case)
    by_hand = [greedy_by_hand(bb, p, max_new_tokens=8) for p in PROMPTS]
    assert any(len(ids) > 1 for ids in by_hand)  # not just an immediate end-of-sequence
    assert [bb.generate_ids(bb.model, [p], max_new_tokens=8)[0] for p in PROMPTS] == by_hand


@pytest.mark.parametrize(("arch", "case"), PAIRS, ids=PAIR_IDS)
def test_padded_batch_equals_one_by_one(models, arch, case, monkeypatch):
    bb = models(arch, case)
    one_by_one = [bb.generate_ids(bb.model, [p], max_new_tokens=8)[0] for p in PROMPTS]
    groups = []
    real = CausalDecoder._rows
    monkeypatch.setattr(
        CausalDecoder, "_rows", lambda self, *a, **k: groups.append(a[2].shape[0]) or real(self, *a, **k)
    )
    assert bb.generate_ids(bb.model, PROMPTS, max_new_tokens=8, batch_size=4) == one_by_one
    if not bb.kind.encoder_decoder and not bb.kind.padding_moves_prefix(core_model(bb.model).config):
        assert len(groups) > 1 and sum(groups) == len(PROMPTS)  # prefilled in groups of similar length, merged
    beams = [bb.generate_ids(bb.model, [p], max_new_tokens=8, num_beams=3)[0] for p in PROMPTS]
    assert bb.generate_ids(bb.model, PROMPTS, max_new_tokens=8, batch_size=4, num_beams=3) == beams


# Prompts sharing their first 30 characters (bytes on the tiny models), after the chat template's own.
SHARED = [f"Answer with one word. Question: {q}" for q in ("cat", "a much longer owl", "x", "the meeting moved")]


@pytest.mark.parametrize(("arch", "case"), PAIRS, ids=PAIR_IDS)
def test_shared_prefix_prefilled_once_gives_what_each_prompt_alone_gives(models, arch, case, monkeypatch):
    bb = models(arch, case)
    one_by_one = [bb.generate_ids(bb.model, [p], max_new_tokens=8)[0] for p in SHARED]  # batch 1: nothing shared
    beams = [bb.generate_ids(bb.model, [p], max_new_tokens=8, num_beams=3)[0] for p in SHARED]
    cuts = []
    real = CausalDecoder._shared_head
    monkeypatch.setattr(CausalDecoder, "_shared_head", lambda self, prefix: cuts.append(prefix) or real(self, prefix))
    assert bb.generate_ids(bb.model, SHARED, max_new_tokens=8, batch_size=4) == one_by_one
    assert bb.generate_ids(bb.model, SHARED, max_new_tokens=8, batch_size=4, num_beams=3) == beams
    config = core_model(bb.model).config
    # Used wherever it is exact: decoder-only models without windowed attention (GPT-Neo's local layers).
    assert bool(cuts) == (not bb.kind.encoder_decoder and not bb.kind.padding_moves_prefix(config))
    assert all(prefix.shape[1] >= MIN_SHARED for prefix in cuts)


@pytest.mark.parametrize("arch", ARCHS)
def test_one_beam_is_greedy(models, arch):
    bb = models(arch, [name for name, _ in CASES].index("prompt_tuning"))
    ids, mask = bb.pad_prompts([bb.prompt_ids(p) for p in PROMPTS])
    kwargs = {"max_new_tokens": 8, "eos_token_id": EOS, "pad_token_id": PAD}
    assert beam_search(bb.model, ids, mask, num_beams=1, **kwargs) == greedy(bb.model, ids, mask, **kwargs)


def hf_beams(bb, prompt: str, num_beams: int, max_new_tokens: int) -> list[int]:
    ids = torch.tensor([bb.prompt_ids(prompt)])
    with torch.no_grad():
        out = bb.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=num_beams,
            pad_token_id=PAD,
            eos_token_id=EOS,
        )
    new = out[0, 1 if bb.is_seq2seq else ids.shape[1] :].tolist()
    return new[: new.index(EOS) + 1] if EOS in new else new


@pytest.mark.parametrize("num_beams", [2, 4])
@pytest.mark.parametrize("name", ["none", "lora"])
@pytest.mark.parametrize("arch", ARCHS)
def test_beam_search_equals_transformers_on_plain_models(models, arch, name, num_beams):
    bb = models(arch, [n for n, _ in CASES].index(name))
    ours = [bb.generate_ids(bb.model, [p], max_new_tokens=10, num_beams=num_beams)[0] for p in PROMPTS]
    assert ours == [hf_beams(bb, p, num_beams, 10) for p in PROMPTS]
    # The check can fail: beam search finds something other than greedy on these prompts.
    assert ours != [bb.generate_ids(bb.model, [p], max_new_tokens=10)[0] for p in PROMPTS]


def test_beam_score_is_the_best_hypothesis(models):
    """Brute force on two new tokens: the returned pair has the highest summed log-probability among
    all two-token continuations the beams could reach (k = 4: the best first tokens)."""
    bb = models("tiny-llama", [n for n, _ in CASES].index("lora"))
    prompt = torch.tensor([bb.prompt_ids("Repeat: cat")])
    with torch.no_grad():
        first = torch.log_softmax(bb.model(input_ids=prompt).logits[0, -1], -1)
        best = (float("-inf"), None)
        for a in first.topk(4).indices.tolist():
            if a == EOS:
                continue
            second = torch.log_softmax(
                bb.model(input_ids=torch.cat([prompt, torch.tensor([[a]])], 1)).logits[0, -1], -1
            )
            b = int(second.argmax())
            best = max(best, ((first[a] + second[b]).item() / 2, [a, b]), key=lambda x: x[0])
    ids, mask = bb.pad_prompts([prompt[0].tolist()])
    found = beam_search(bb.model, ids, mask, max_new_tokens=2, num_beams=4, eos_token_id=EOS, pad_token_id=PAD)[0]
    assert found == best[1] or (EOS in found and first[EOS].item() > best[0])


def test_unsupported_prompt_learning_type_is_named():
    from peft import PromptEncoderConfig, get_peft_model

    from peftlab.errors import PeftlabError
    from peftlab.models.tiny import tiny_model

    model, _ = tiny_model("tiny-llama")
    cfg = PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16)
    assert get_method("none")  # the registry loads
    p_tuning = get_peft_model(model, cfg)
    ids, mask = torch.tensor([[40, 41, 42]]), torch.ones(1, 3, dtype=torch.long)
    # P-tuning is a soft prompt from an encoder: decoded like prompt tuning, so it works.
    assert len(greedy(p_tuning, ids, mask, max_new_tokens=3, eos_token_id=EOS, pad_token_id=PAD)[0]) >= 1
    p_tuning.active_peft_config.peft_type = type(cfg.peft_type)("MULTITASK_PROMPT_TUNING")
    with pytest.raises(PeftlabError, match="MULTITASK_PROMPT_TUNING is not supported"):
        greedy(p_tuning, ids, mask, max_new_tokens=3, eos_token_id=EOS, pad_token_id=PAD)
