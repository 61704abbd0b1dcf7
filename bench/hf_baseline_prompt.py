#!/usr/bin/env python3
"""The Trainer + peft baseline (../shared/bench/hf_baseline.py) with prompt tuning as its method.

The shared baseline knows LoRA and full fine-tuning only, and the shared folder is read-only, so
this runs it unchanged with one difference: the decoder-only model it loads comes back wrapped by
peft's prompt tuning (Lester et al., 2021, "The Power of Scale for Parameter-Efficient Prompt
Tuning": ``num_virtual_tokens`` trained input embeddings, the model frozen). Everything else, the
recipe, collator, Trainer arguments and the printed JSON line, is the shared script's own (its
"method" field says "full", the method it was told, with the model prompt-tuned underneath).

    .venv/bin/python bench/hf_baseline_prompt.py --baseline ../shared/bench/hf_baseline.py \
        --num-virtual-tokens 20 -- --model DIR --data ../shared/data/dialogsum/train.jsonl --recipe strong
"""

from __future__ import annotations

import argparse
import importlib.util
import sys


def load(path: str):
    spec = importlib.util.spec_from_file_location("hf_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PromptTuned:
    """Stands in for AutoModelForCausalLM in the shared script: the same model, prompt-tuned by peft."""

    num_virtual_tokens = 20
    auto = None

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        from peft import PromptTuningConfig, TaskType, get_peft_model

        model = cls.auto.from_pretrained(*args, **kwargs)
        config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cls.num_virtual_tokens)
        return get_peft_model(model, config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="the shared hf_baseline.py")
    ap.add_argument("--num-virtual-tokens", type=int, default=20)
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="-- then the shared script's arguments")
    a = ap.parse_args()
    rest = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    if "--method" in rest:
        ap.error("the method is prompt tuning here: leave --method out of the shared script's arguments")
    baseline = load(a.baseline)
    PromptTuned.auto, PromptTuned.num_virtual_tokens = baseline.AutoModelForCausalLM, a.num_virtual_tokens
    baseline.AutoModelForCausalLM = PromptTuned  # the script looks the name up in its own module
    sys.argv = [a.baseline, *rest, "--method", "full"]  # "full": the script wraps nothing more
    baseline.main()


if __name__ == "__main__":
    main()
