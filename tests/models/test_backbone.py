import pytest
import torch

from peftlab.models.backbone import IGNORE, Backbone
from peftlab.models.tiny import tiny_model

ARCHS = ("tiny-t5", "tiny-gpt-neo", "tiny-llama")


def backbone(name: str) -> Backbone:
    model, tok = tiny_model(name)
    return Backbone(model=model, tokenizer=tok, source=name)


@pytest.mark.parametrize("name", ("tiny-gpt-neo", "tiny-llama"))
def test_causal_labels_mask_prompt_and_padding(name):
    bb = backbone(name)
    f = bb.encode("Repeat: cat", "cat")
    prompt = bb.prompt_ids("Repeat: cat")
    # prompt tokens are -100; the target and its EOS are learned
    assert f["labels"][: len(prompt)] == [IGNORE] * len(prompt)
    assert f["labels"][len(prompt) :] == f["input_ids"][len(prompt) :]
    assert f["labels"][-1] == bb.tokenizer.eos_token_id
    batch = bb.collate([f, bb.encode("Repeat: a much longer word here", "longer")])
    # dynamic padding: width of the longest example, not a fixed length
    assert batch["input_ids"].shape[1] == max(len(f["input_ids"]), int(batch["attention_mask"][1].sum()))
    pad_positions = batch["attention_mask"] == 0
    assert pad_positions.any()
    assert (batch["labels"][pad_positions] == IGNORE).all()


def test_chat_template_used_when_present():
    bb = backbone("tiny-llama")  # has a chat template; GPT-Neo has none
    assert bb.chat and bb.format_prompt("hi") == "<user>hi\n<assistant>"
    assert not backbone("tiny-gpt-neo").chat


def test_seq2seq_features():
    bb = backbone("tiny-t5")
    f = bb.encode("Repeat: cat", "cat")
    assert f["input_ids"][-1] == bb.tokenizer.eos_token_id
    assert f["labels"] == bb.tokenizer("cat").input_ids  # target + </s>, nothing masked


@pytest.mark.parametrize("name", ARCHS)
def test_batched_generation_equals_one_by_one(name):
    """Length-sorted, padded batches must give exactly what each prompt gives alone."""
    bb = backbone(name)
    prompts = ["Repeat: a", "Repeat: a much longer prompt", "Repeat: mid size", "x"]
    batched = bb.generate(bb.model, prompts, max_new_tokens=6, batch_size=4)
    single = [bb.generate(bb.model, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_truncation_is_counted():
    bb = backbone("tiny-llama")
    ids = bb.prompt_ids("x" * 100, max_source_tokens=10)
    assert bb.truncated == 1
    assert len(ids) < len(bb.prompt_ids("x" * 100, max_source_tokens=1000))
    assert torch.tensor(ids).numel() > 0


def test_truncation_keeps_both_ends_of_the_prompt():
    """The instruction before the text and the question after it must both survive."""
    bb = backbone("tiny-t5")  # byte tokenizer: one token per character
    prompt = "HEAD:" + "m" * 200 + ":TAIL"
    kept = bb._truncate(prompt, 20)
    assert kept.startswith("HEAD:") and kept.endswith(":TAIL")
    assert len(bb.tokenizer(kept, add_special_tokens=False).input_ids) == 20


@pytest.mark.parametrize("name", ["tiny-t5", "tiny-llama"])
def test_beam_search_batched_equals_one_by_one_and_width_one_is_greedy(name):
    bb = backbone(name)
    prompts = ["Repeat: a", "Repeat: a much longer prompt", "x"]
    greedy = bb.generate(bb.model, prompts, max_new_tokens=5, batch_size=3)
    assert bb.generate(bb.model, prompts, max_new_tokens=5, batch_size=3, num_beams=1) == greedy
    beams = bb.generate(bb.model, prompts, max_new_tokens=5, batch_size=3, num_beams=3)
    assert beams == [bb.generate(bb.model, [p], max_new_tokens=5, batch_size=1, num_beams=3)[0] for p in prompts]
