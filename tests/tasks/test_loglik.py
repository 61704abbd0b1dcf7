import pytest
import torch

from peftlab.methods import trainable_parameters
from peftlab.models.backbone import Backbone
from peftlab.models.tiny import PAD, tiny_model
from peftlab.tasks import loglik
from peftlab.tasks.loglik import (
    classify,
    continuation_ids,
    continuation_logprobs,
    multiple_choice,
    pick_choice,
)
from tests.methods.harness import setup

ARCHS = ("tiny-t5", "tiny-gpt-neo", "tiny-llama")


def backbone(name: str) -> Backbone:
    model, tok = tiny_model(name)
    return Backbone(model=model, tokenizer=tok, source=name)


def by_hand(bb: Backbone, model, prompt: str, continuation: str) -> tuple[float, int]:
    """One example alone, no padding: log_softmax of the logits, gathered at the continuation."""
    src = bb.prompt_ids(prompt)
    cont = bb.tokenizer(continuation, add_special_tokens=False).input_ids  # no EOS
    with torch.no_grad():
        if bb.is_seq2seq:
            ids = torch.tensor([src])
            dec = torch.tensor([[PAD] + cont[:-1]])  # T5's decoder starts from PAD
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=dec).logits[0]
            logp = torch.log_softmax(logits, -1)[torch.arange(len(cont)), cont]
        else:
            ids = torch.tensor([src + cont])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -ids.shape[1] :]
            logp = torch.log_softmax(logits, -1)[torch.arange(len(src) - 1, len(src) + len(cont) - 1), cont]
    return logp.sum().item(), len(cont)


PROMPTS = ["Sentiment: good", "Question: which of these is a much longer prompt than the others?", "x"]
CONTS = [["positive", "negative"], ["a", "the longest option here", "mid size"], ["y", "zz"]]


@pytest.mark.parametrize("method", (None, "lora", "prompt_tuning", "prefix_tuning"))
@pytest.mark.parametrize("name", ARCHS)
def test_batched_equals_by_hand(name, method):
    if method is None:
        bb = backbone(name)
    else:
        bb = setup(name, method)[0]
    model = bb.model.eval()  # the reference below needs eval too (LoRA dropout)
    got = continuation_logprobs(bb, model, PROMPTS, CONTS, batch_size=16)  # all rows in one padded batch
    small = continuation_logprobs(bb, model, PROMPTS, CONTS, batch_size=2)
    for i, (p, conts) in enumerate(zip(PROMPTS, CONTS)):
        for j, c in enumerate(conts):
            ref, n = by_hand(bb, model, p, c)
            assert got[i][j][1] == n == len(c)  # byte tokenizer: one token per character
            assert got[i][j][0] == pytest.approx(ref, abs=1e-4)
            assert small[i][j][0] == pytest.approx(ref, abs=1e-4)
            assert got[i][j][0] < 0


@pytest.mark.parametrize("name", ARCHS)
def test_continuation_is_the_training_target_without_eos(name):
    bb = backbone(name)
    target = [t for t in bb.encode("p", "positive")["labels"] if t >= 0]
    assert target[-1] == bb.tokenizer.eos_token_id
    assert continuation_ids(bb, "positive") == target[:-1]


@pytest.mark.parametrize("name", ARCHS)
def test_classify_is_constrained(name):
    bb = backbone(name)
    labels = ["positive", "negative", "neutral"]
    prompts = [f"Review {i}: {'great' if i % 2 else 'awful'} stuff" for i in range(20)]
    preds = classify(bb, bb.model, prompts, labels)
    assert len(preds) == 20 and set(preds) <= set(labels)


@pytest.mark.parametrize("name", ARCHS)
def test_lora_learns_sentiment(name):
    bb, _, _ = setup(name, "lora")
    pairs = [("Sentiment: good", "positive"), ("Sentiment: bad", "negative")]
    batch = bb.collate([bb.encode(p, t) for p, t in pairs])
    opt = torch.optim.AdamW(trainable_parameters(bb.model).values(), lr=1e-2)
    bb.model.train()
    for _ in range(30):
        bb.model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    assert classify(bb, bb.model, [p for p, _ in pairs], ["positive", "negative"]) == ["positive", "negative"]
    assert bb.model.training  # the training mode is restored


def test_pick_choice_normalises_by_length():
    short, long = (-2.0, 1), (-3.0, 3)  # sum prefers short (-2 > -3), mean prefers long (-1 > -2)
    assert pick_choice([short, long]) == 1
    assert pick_choice([(-1.0, 1), (-1.0, 1)]) == 0  # ties: first


def test_multiple_choice_uses_the_mean(monkeypatch):
    fake = [[(-2.0, 1), (-3.0, 3)], [(-0.5, 2), (-4.0, 2), (-0.9, 1)]]
    monkeypatch.setattr(loglik, "continuation_logprobs", lambda *a, **k: fake)
    bb = backbone("tiny-gpt-neo")
    assert multiple_choice(bb, bb.model, ["q1", "q2"], [["a", "bcd"], ["xy", "zw", "v"]]) == [1, 0]


@pytest.mark.parametrize("name", ARCHS)
def test_multiple_choice_per_prompt_choices(name):
    bb = backbone(name)
    choices = [["a", "bb"], ["one", "two", "three", "four"]]
    picks = multiple_choice(bb, bb.model, ["first", "second"], choices)
    assert 0 <= picks[0] < 2 and 0 <= picks[1] < 4
    scores = continuation_logprobs(bb, bb.model, ["first", "second"], choices)
    assert picks == [pick_choice(row) for row in scores]


def test_progress_counts_every_pair_scored_content_free_included():
    bb = backbone("tiny-llama")
    three_prompts = (["a", "b", "c"], ["yes", "no"])  # classify: 3 x 2 pairs
    two_prompts = (["a", "b"], [["x", "y"], ["y", "z", "w"]])  # multiple choice: 2 + 3 pairs, 4 distinct options
    for content_free, want_classify, want_choice in ((None, 6, 5), (["N/A", ""], 6 + 2 * 2, 5 + 2 * 4)):
        seen = []
        classify(bb, bb.model, *three_prompts, batch_size=2, content_free=content_free, progress=seen.append)
        assert sum(seen) == want_classify == loglik.pairs_to_score(3, [three_prompts[1]] * 3, content_free)
        assert max(seen) <= 2 * 2  # one call per batch of 2 prompts, 2 label words each
        seen = []
        multiple_choice(bb, bb.model, *two_prompts, batch_size=2, content_free=content_free, progress=seen.append)
        assert sum(seen) == want_choice == loglik.pairs_to_score(2, two_prompts[1], content_free)


@pytest.mark.parametrize("method", (None, "lora", "prompt_tuning", "prefix_tuning"))
@pytest.mark.parametrize("name", ARCHS)
def test_options_scored_on_the_shared_prompt_cache_equal_one_row_per_pair(name, method):
    bb = backbone(name) if method is None else setup(name, method)[0]
    model = bb.model.eval()
    prompts = PROMPTS + ["Sentiment: a much longer review than the first one, with more words", "ok"]
    conts = CONTS + [["positive", "negative", "neutral"], ["", "k"]]  # an empty option scores 0
    # batch_size 4: batches split between prompts, of uneven lengths (left padding in the prefill)
    pairs = continuation_logprobs(bb, model, prompts, conts, batch_size=4, share_prompt=False)
    shared = continuation_logprobs(bb, model, prompts, conts, batch_size=4, share_prompt=True)
    for row_p, row_s in zip(pairs, shared):
        assert [n for _, n in row_p] == [n for _, n in row_s]
        assert [s for s, _ in row_s] == pytest.approx([s for s, _ in row_p], abs=1e-4)
        assert pick_choice(row_p) == pick_choice(row_s)
    assert shared[-1][0] == (0.0, 0)


@pytest.mark.parametrize("name", ARCHS)
def test_the_shared_prompt_runs_once_for_all_its_options(name):
    bb = backbone(name)
    seen = []
    stack = bb.model.get_encoder() if bb.is_seq2seq else bb.model  # the prompt's tokens: the encoder's input
    hook = stack.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.append(i[0].numel()))
    prompt, options = ["a prompt of some forty characters or so..."], [["one", "two", "three", "four", "five"]]
    continuation_logprobs(bb, bb.model, prompt, options, share_prompt=False)
    by_pair, seen[:] = sum(seen), []
    continuation_logprobs(bb, bb.model, prompt, options, share_prompt=True)
    hook.remove()
    prompt_tokens = len(bb.prompt_ids(prompt[0]))
    assert by_pair >= 5 * prompt_tokens  # the prompt ran once per option
    # once, plus the options' tokens (T5's embedding is shared by encoder and decoder: both count)
    assert sum(seen) < prompt_tokens + 5 * (len("three") + 1)


def test_shared_prompt_scoring_is_used_where_it_applies():
    from peftlab.models.option_scores import shares_prompt

    assert shares_prompt(backbone("tiny-llama").model) and shares_prompt(backbone("tiny-t5").model)
    assert shares_prompt(setup("tiny-t5", "prefix_tuning")[0].model)
    bb = setup("tiny-gpt-neo", "prefix_tuning")[0]  # local attention + a prefix: left padding would shift it
    assert not shares_prompt(bb.model)


@pytest.mark.parametrize("name", ("tiny-llama", "tiny-t5"))
def test_options_run_in_groups_of_similar_length_with_the_scores_of_one_row_each(name, monkeypatch):
    """CommonsenseQA's options are 1-8 tokens: padded to the longest, the forward over them was three
    quarters padding. Each group is padded to its own longest option. A decoder-only model feeds each
    option but its last token on the prompt's cache (a one-token option, scored by the prefill's logits
    alone, runs in none); an encoder-decoder's decoder reads [start] + the option but its last token."""
    from peftlab.models.causal import Causal
    from peftlab.models.seq2seq import Seq2Seq

    bb = backbone(name)
    model = bb.model.eval()
    prompts = ["Question: which one", "Question: another, longer question here"]
    options = [["a", "bcdefgh", "hi"], ["jk", "l", "mnopqrs"]]  # the test tokenizer: a token per character
    lengths = {o: len(continuation_ids(bb, o)) for opts in options for o in opts}
    assert sorted(set(lengths.values())) == [1, 2, 7]  # the premise: three lengths, one of them 1
    kind, method = (Seq2Seq, "_scored") if bb.is_seq2seq else (Causal, "_continued")
    fed, original = [], getattr(kind, method)

    def spy(decoder, opts, *rest):
        fed.append(sorted(len(o) for o in opts))
        return original(decoder, opts, *rest)

    monkeypatch.setattr(kind, method, staticmethod(spy))
    shared = continuation_logprobs(bb, model, prompts, options, batch_size=8, share_prompt=True)
    want = [[1, 1], [2, 2], [7, 7]] if bb.is_seq2seq else [[2, 2], [7, 7]]
    assert sorted(fed) == want  # one group per length, no padding
    for prompt, opts, row in zip(prompts, options, shared):
        for option, (score, n) in zip(opts, row):
            alone, n_alone = by_hand(bb, model, prompt, option)
            assert n == n_alone
            assert score == pytest.approx(alone, abs=1e-4)


def test_prompts_per_scoring_batch_stop_where_their_repeated_cache_would_pass_the_cap():
    bb = backbone("tiny-llama")
    model = bb.model.eval()
    prompts = [f"Review {i}: " + "good " * i for i in range(6)]
    options = [["positive", "negative", "neutral"]] * len(prompts)
    from peftlab.models.forward import core_model
    from peftlab.models.kv_budget import GB, kv_bytes_per_token

    per_prompt = 3 * (len(bb.prompt_ids(prompts[-1])) + 3) * kv_bytes_per_token(core_model(model).config)
    calls = {}
    for cap in (None, 2.5 * per_prompt / GB):
        seen = []
        calls[cap] = continuation_logprobs(
            bb, model, prompts, options, batch_size=6, kv_cache_gb=cap, progress=seen.append, share_prompt=True
        )
        calls[cap, "batches"] = seen
    assert calls[None, "batches"] == [18]  # every prompt in one batch: 6 prompts x 3 options
    capped = calls[2.5 * per_prompt / GB, "batches"]
    assert max(capped) <= 2 * 3 and sum(capped) == 18  # two prompts fit the cap, three do not
    for free, tight in zip(calls[None], calls[2.5 * per_prompt / GB]):
        assert [s for s, _ in tight] == pytest.approx([s for s, _ in free], abs=1e-5)
