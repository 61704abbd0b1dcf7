"""How a decoder-only model (GPT-Neo, Llama/SmolLM2) reads a task: prompt and target are one sequence.

Training features label only the target and its end-of-sequence token (the prompt's labels are
``IGNORE``), position t predicts token t + 1, generation prompts are left-padded so every row's next
token is at the end, and attribution moves the embeddings entering the decoder stack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from peftlab.models.kind import IGNORE, right_pad


class Causal:
    encoder_decoder = False

    # ---- encoding ---------------------------------------------------------------------------
    def plain_prompt(self, prompt: str) -> str:
        return prompt + "\n"  # without a chat template, a plain causal LM continues after the prompt's line

    def prompt_special_tokens(self) -> bool:
        return False  # chat templates carry their special tokens; plain text needs none

    def target_ids(self, tokenizer, target: str, max_target_tokens: int) -> list[int]:
        # The target ends with EOS so the model learns to stop (for SmolLM2 EOS is <|im_end|>).
        return tokenizer(target, add_special_tokens=False).input_ids[: max_target_tokens - 1] + [tokenizer.eos_token_id]

    def features(self, source: list[int], target: list[int]) -> dict:
        return {"input_ids": source + target, "labels": [IGNORE] * len(source) + target}

    def source_length(self, features: dict) -> int:
        """How many leading ``input_ids`` are the prompt."""
        return sum(label == IGNORE for label in features["labels"])

    def prompt_columns(self, width: int, length: int) -> slice:
        """Where a prompt of ``length`` tokens sits in a generation batch ``width`` wide: left padding."""
        return slice(width - length, width)

    # ---- loss -------------------------------------------------------------------------------
    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Training tokens of a batch, as a tokens budget counts them: prompt + target, padding not
        counted. Here prompt and target are one sequence: its real tokens."""
        return int(batch["attention_mask"].sum())

    def labelled_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Next-token labels: position 0 predicts nothing."""
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def loss_sum(self, model: nn.Module, head: nn.Module | None, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed cross-entropy of the labelled tokens, the output head run on those positions only.

        The head turns every position's hidden state into logits over the whole vocabulary (49,152
        words for SmolLM2): about a fifth of the compute per token, and a [batch, length, vocabulary]
        tensor that with its softmax and gradient dominated peak memory. The loss reads only the
        target's positions, not the prompt's (most of a summarization example) nor the padding, so a
        pre-hook hands the head only those. transformers' ``logits_to_keep`` cannot: it keeps the same
        positions in every row, and each row's target starts elsewhere."""
        labels = batch["labels"]
        target = labels[:, 1:]
        keep = target != IGNORE  # position t predicts token t + 1
        length = labels.shape[1]
        gathered = []

        def only_labelled(module, args):
            hidden = args[0]
            if hidden.dim() != 3 or hidden.shape[1] < length:
                return None  # not the shape this hook understands: the head runs on everything
            offset = hidden.shape[1] - length  # prompt tuning prepends virtual tokens
            gathered.append(True)
            return (hidden[:, offset : offset + length - 1][keep], *args[1:])

        handle = head.register_forward_pre_hook(only_labelled) if head is not None else None
        try:
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        finally:
            if handle is not None:
                handle.remove()
        if gathered:
            return F.cross_entropy(logits.float(), target[keep], reduction="sum")
        offset = logits.shape[1] - length
        return F.cross_entropy(
            logits[:, offset : offset + length - 1].flatten(0, 1).float(),
            target.flatten(),
            ignore_index=IGNORE,
            reduction="sum",
        )

    # ---- scoring ----------------------------------------------------------------------------
    def continuation_logprobs(
        self, model: nn.Module, sources: list[list[int]], continuations: list[list[int]], pad: int, device
    ) -> list[float]:
        """One right-padded row prompt+continuation per candidate; the log-prob of token t is read from
        the logits at t-1. Right padding keeps every real token at the position it has alone (and in
        training, whose collate right-pads too), also with a soft prompt prepended by peft."""
        ids, mask = right_pad([s + c for s, c in zip(sources, continuations)], pad)
        target = torch.zeros(ids.shape, dtype=torch.bool)  # continuation positions
        for r, (s, c) in enumerate(zip(sources, continuations)):
            target[r, len(s) : len(s) + len(c)] = True
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logits = logits[:, -ids.shape[1] :].float()  # prompt tuning prepends virtual tokens' logits: drop them
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1)
        return (logp * target[:, 1:].to(device)).sum(-1).tolist()

    # ---- attribution ------------------------------------------------------------------------
    def input_stack(self, base: nn.Module) -> nn.Module:
        """The stack that embeds the input tokens: the decoder (LlamaModel, GPTNeoModel)."""
        return base.base_model

    def attributed_input(self, prompt_ids: list[int], output_ids: list[int]) -> list[int]:
        return prompt_ids + output_ids  # one sequence; only the prompt's positions move along the path

    def output_logits(self, model: nn.Module, ids: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """Logits predicting each ``output`` token, given ``attributed_input`` rows ``ids``."""
        # Only the positions that predict output tokens: saves the (rows, length, vocab) logits.
        n_out = output.shape[1]
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=n_out + 1).logits[:, :-1]


CAUSAL = Causal()
