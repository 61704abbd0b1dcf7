"""How an encoder-decoder model (T5) reads a task: the prompt in the encoder, the target in the decoder.

The decoder sees only the target, so nearly every decoder position has a label; its inputs are the
labels shifted right, built by the model's own ``prepare_decoder_input_ids_from_labels``. Prompts
carry the tokenizer's end marker (``</s>``), generation prompts are right-padded (the decoder starts
fresh for every row), and attribution moves the embeddings entering the encoder stack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from peftlab.models.kind import IGNORE, right_pad


class Seq2Seq:
    encoder_decoder = True

    # ---- encoding ---------------------------------------------------------------------------
    def plain_prompt(self, prompt: str) -> str:
        return prompt

    def prompt_special_tokens(self) -> bool:
        return True  # the encoder input ends with the tokenizer's own end marker (</s> for T5)

    def target_ids(self, tokenizer, target: str, max_target_tokens: int) -> list[int]:
        return tokenizer(target, add_special_tokens=True).input_ids[:max_target_tokens]

    def features(self, source: list[int], target: list[int]) -> dict:
        return {"input_ids": source, "labels": target}

    def source_length(self, features: dict) -> int:
        return len(features["input_ids"])

    def prompt_columns(self, width: int, length: int) -> slice:
        return slice(0, length)  # right padding: the encoder masks it, the decoder never sees it

    # ---- loss -------------------------------------------------------------------------------
    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Training tokens of a batch, as a tokens budget counts them: prompt + target, padding not
        counted. The prompt is the encoder's real tokens, the target the decoder's labelled ones."""
        return int(batch["attention_mask"].sum()) + self.labelled_tokens(batch)

    def labelled_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"] != IGNORE).sum())

    def decoder_logits(self, model: nn.Module, labels: torch.Tensor, **inputs) -> torch.Tensor:
        """The decoder's logits for ``labels`` (teacher-forced). The decoder input is built here, as the
        model would from labels, so the model computes no loss of its own: that would be wasted work,
        and a peft wrapper may add to it (AdaLoRA's regulariser; on a model loaded for inference,
        peft 0.21 even fails computing it)."""
        shift = getattr(getattr(model, "module", model), "prepare_decoder_input_ids_from_labels", None)  # DDP wraps
        if shift is None:
            return model(**inputs, labels=labels).logits
        return model(**inputs, decoder_input_ids=shift(labels=labels)).logits

    def loss_sum(self, model: nn.Module, head: nn.Module | None, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed cross-entropy of the decoder's labelled tokens."""
        logits = self.decoder_logits(model, **batch)
        return F.cross_entropy(
            logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE, reduction="sum"
        )

    # ---- scoring ----------------------------------------------------------------------------
    def continuation_logprobs(
        self, model: nn.Module, sources: list[list[int]], continuations: list[list[int]], pad: int, device
    ) -> list[float]:
        """Encoder input = prompt (right-padded), labels = continuation (padded with -100); the decoder
        inputs are the labels shifted right, as in training."""
        ids, mask = right_pad(sources, pad)
        width = max(1, max(len(c) for c in continuations))  # an empty continuation still needs one decoder step
        labels = right_pad(continuations, IGNORE, width)[0].to(device)
        logits = self.decoder_logits(model, labels, input_ids=ids.to(device), attention_mask=mask.to(device)).float()
        keep = labels != IGNORE
        logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
        return (logp * keep).sum(-1).tolist()

    # ---- attribution ------------------------------------------------------------------------
    def input_stack(self, base: nn.Module) -> nn.Module:
        """The stack that embeds the input tokens: the encoder (T5Stack)."""
        return base.get_encoder()

    def attributed_input(self, prompt_ids: list[int], output_ids: list[int]) -> list[int]:
        return prompt_ids  # the output goes to the decoder, as labels

    def output_logits(self, model: nn.Module, ids: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """Decoder logits for each ``output`` token (teacher-forced), given encoder rows ``ids``."""
        return self.decoder_logits(
            model, output.repeat(len(ids), 1), input_ids=ids, attention_mask=torch.ones_like(ids)
        )


SEQ2SEQ = Seq2Seq()
