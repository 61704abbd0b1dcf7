"""Integrated gradients over the input embeddings of tiny models: completeness (the attributions sum
to f(input) - f(baseline)) for causal and seq2seq models, every method, soft-prompt tokens included."""

import pytest
import torch

from peftlab.inspect.attribute import attribute_prompt
from peftlab.methods import get_method
from peftlab.models.backbone import Backbone
from peftlab.models.tiny import tiny_model

PROMPT = "Repeat: honey"
TOLERANCE = 0.02  # relative completeness gap allowed at 64 Gauss-Legendre steps (measured: < 0.1%)


def baseline_for(arch: str) -> str:
    # tiny-llama's pad row is all zeros (padding_idx), which 'pad' refuses: the mean embedding instead
    return "mean" if arch == "tiny-llama" else "pad"


def setup(arch: str, method: str = "none", **options) -> Backbone:
    model, tok = tiny_model(arch)
    m = get_method(method)
    model = m.apply(model, m.config_cls(**options))
    return Backbone(model=model, tokenizer=tok, source=arch)


def logprob_of_output(bb: Backbone, prompt_ids: list[int], output_ids: list[int]) -> float:
    """log p(output | prompt) with an ordinary forward pass (no hook): what f(input) must equal."""
    with torch.no_grad():
        if bb.is_seq2seq:
            logits = bb.model(input_ids=torch.tensor([prompt_ids]), labels=torch.tensor([output_ids])).logits
        else:
            ids = torch.tensor([prompt_ids + output_ids])
            logits = bb.model(input_ids=ids).logits[:, -len(output_ids) - 1 : -1]
    logp = torch.log_softmax(logits.float(), -1)[0]
    return float(logp[torch.arange(len(output_ids)), torch.tensor(output_ids)].sum())


CASES = [
    ("tiny-gpt-neo", "none", {}),
    ("tiny-llama", "none", {}),
    ("tiny-t5", "none", {}),
    ("tiny-llama", "prompt_tuning", {"num_virtual_tokens": 4}),
    ("tiny-t5", "prompt_tuning", {"num_virtual_tokens": 4}),
    ("tiny-llama", "lora", {"rank": 4}),
    ("tiny-t5", "prefix_tuning", {"num_virtual_tokens": 3}),
    ("tiny-t5", "ia3", {}),
    ("tiny-gpt-neo", "last_layers", {"num_layers": 1}),
    ("tiny-gpt-neo", "parallel_adapter", {}),
    (
        "tiny-llama",
        "hybrid",
        {"methods": [{"name": "lora", "rank": 4}, {"name": "prompt_tuning", "num_virtual_tokens": 3}]},
    ),
]


@pytest.mark.parametrize(("arch", "method", "options"), CASES, ids=[f"{a}-{m}" for a, m, _ in CASES])
def test_attributions_sum_to_the_change_in_log_probability(arch, method, options):
    bb = setup(arch, method, **options)
    r = attribute_prompt(bb, bb.model, PROMPT, max_new_tokens=6, steps=64, baseline=baseline_for(arch))
    change = r["f_input"] - r["f_baseline"]
    assert abs(r["attribution_sum"] - change) <= TOLERANCE * abs(change)
    assert r["completeness_gap_relative"] <= TOLERANCE
    assert abs(r["f_input"] - r["f_baseline"]) > 1.0  # the test is not vacuous: the baseline changes f
    prompt_ids = bb.prompt_ids(PROMPT)
    # virtual input tokens: prompt tuning's (prefix tuning's virtual keys/values are not inputs)
    components = [{"name": method, **options}] if method != "hybrid" else options["methods"]
    soft = [c for c in components if c["name"] == "prompt_tuning"]
    virtual = sum(c["num_virtual_tokens"] for c in soft)
    assert r["virtual_tokens"] == virtual
    assert len(r["tokens"]) == len(r["scores"]) == virtual + len(prompt_ids)
    assert r["token_ids"][virtual:] == prompt_ids
    assert r["f_input"] < 0  # a log-probability


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-t5"])
def test_soft_prompt_tokens_are_on_the_path(arch):
    """prompt_tuning: the virtual tokens get attributions, and they count in the completeness sum."""
    bb = setup(arch, "prompt_tuning", num_virtual_tokens=4)
    r = attribute_prompt(bb, bb.model, PROMPT, max_new_tokens=6, steps=64, baseline=baseline_for(arch))
    assert r["tokens"][:4] == ["<v0>", "<v1>", "<v2>", "<v3>"]
    virtual = sum(abs(s) for s in r["scores"][:4])
    assert virtual > 0.01 * sum(abs(s) for s in r["scores"])
    real_only = sum(r["scores"][4:])
    change = r["f_input"] - r["f_baseline"]
    assert abs(real_only - change) > abs(r["attribution_sum"] - change)  # without them the sum is off


@pytest.mark.parametrize(
    ("arch", "method"),
    [("tiny-llama", "none"), ("tiny-t5", "none"), ("tiny-llama", "prompt_tuning"), ("tiny-gpt-neo", "prefix_tuning")],
)
def test_f_input_is_the_models_own_log_probability_and_the_hook_is_removed(arch, method):
    bb = setup(arch, method, **({"num_virtual_tokens": 3} if method != "none" else {}))
    prompt_ids = bb.prompt_ids(PROMPT)
    output_ids = [bb.tokenizer.convert_tokens_to_ids(c) for c in "hon"]
    before = logprob_of_output(bb, prompt_ids, output_ids)
    r = attribute_prompt(bb, bb.model, PROMPT, output_ids=output_ids, steps=8, baseline=baseline_for(arch))
    assert r["f_input"] == pytest.approx(before, abs=1e-4)
    assert logprob_of_output(bb, prompt_ids, output_ids) == pytest.approx(before, abs=1e-6)  # no hook left behind


@pytest.mark.parametrize("arch", ["tiny-gpt-neo", "tiny-t5"])
@pytest.mark.parametrize("baseline", ["pad", "mean"])
def test_completeness_holds_for_both_baselines(arch, baseline):
    bb = setup(arch)
    r = attribute_prompt(bb, bb.model, PROMPT, max_new_tokens=6, steps=64, baseline=baseline)
    assert r["baseline"] == baseline and r["completeness_gap_relative"] <= TOLERANCE


def test_bad_rule_and_baseline_are_peftlab_errors():
    from peftlab.errors import PeftlabError

    llama = setup("tiny-llama")
    with pytest.raises(PeftlabError, match="all-zero embedding.*--baseline mean"):
        attribute_prompt(llama, llama.model, PROMPT, baseline="pad")
    bb = setup("tiny-gpt-neo")
    with pytest.raises(PeftlabError, match="baseline"):
        attribute_prompt(bb, bb.model, PROMPT, baseline="noise")
    with pytest.raises(PeftlabError, match="rule"):
        attribute_prompt(bb, bb.model, PROMPT, rule="simpson")
