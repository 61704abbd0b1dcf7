"""Backbone: hides the difference between decoder-only and encoder-decoder models.

Three jobs, done the same way for every method so comparisons are fair:
- prompt formatting: the task's prompt goes through the tokenizer's chat template when there is
  one (SmolLM2-Instruct), else is used as plain text (T5 encoder input, GPT-Neo continuation); a
  conversation (chat data, tasks/conversation.py) goes through the template turn by turn, or through
  a plain 'Role: content' template;
- training features: for decoder-only models the labels of prompt tokens and of padding are -100,
  so the loss is only on the target and its end-of-sequence token; padding is dynamic (per batch);
- generation: batched, sorted by length (little padding), greedy by default, with the KV cache,
  by peftlab's own decoding loop (models/decode.py), the same for every method.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.measure.precision import autocast
from peftlab.models.beam import beam_search
from peftlab.models.decode import greedy, prefix_needs_equal_lengths
from peftlab.models.forward import core_model
from peftlab.models.kind import IGNORE, ModelKind, kind_of, right_pad
from peftlab.models.kv_budget import GB, batches, kv_bytes_per_token
from peftlab.tasks.conversation import messages_of, render_plain

__all__ = ["IGNORE", "Backbone"]


@dataclass
class Backbone:
    model: nn.Module
    tokenizer: object
    source: str
    use_chat_template: bool = True
    # Digests of the distinct inputs cut to max_source_tokens: a validation prompt scored at every
    # validation point, or the same text in two splits, is one input (``truncated`` counts them).
    truncated_digests: set[bytes] = field(default_factory=set, repr=False)
    # The autocast dtype of every forward pass (training, generation, scoring); None = the weights'.
    compute_dtype: torch.dtype | None = None

    def __post_init__(self):
        tok = self.tokenizer
        if tok.pad_token_id is None:  # GPT-Neo/Llama tokenizers often have none; pad is masked anyway
            tok.pad_token = tok.eos_token
        # Everything that differs between decoder-only and encoder-decoder models (models/kind.py).
        self.kind: ModelKind = kind_of(self.model)
        self.chat = (
            self.use_chat_template and self.kind.uses_chat_template and bool(getattr(tok, "chat_template", None))
        )

    @property
    def truncated(self) -> int:
        """Distinct inputs cut to max_source_tokens so far (summary.json's truncated_inputs)."""
        return len(self.truncated_digests)

    @property
    def is_seq2seq(self) -> bool:
        """Which kind, for reports and tests; code that behaves by kind calls ``self.kind`` instead."""
        return self.kind.encoder_decoder

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def numerics(self):
        """The context of every forward pass, the same for every method (peftlab/precision.py)."""
        return autocast(self.device, self.compute_dtype)

    # ---- formatting -------------------------------------------------------------------------
    def format_prompt(self, prompt: str | list[dict[str, str]]) -> str:
        """The model's input text: a prompt as the single user turn, or a conversation's turns (a list of
        {role, content}, or a Conversation), through the chat template or the plain one."""
        messages = messages_of(prompt)
        if self.chat:
            try:
                return self.tokenizer.apply_chat_template(
                    messages or [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
                )
            except Exception as e:  # jinja's raise_exception: e.g. a template that allows no system turn
                if messages is None:
                    raise
                roles = " ".join(m["role"] for m in messages)
                raise PeftlabError(
                    f"{self.source}: its chat template refuses a conversation with turns {roles} ({e}); "
                    "give conversations it accepts, or set model.chat_template: false for the plain template"
                ) from None
        return self.kind.plain_prompt(prompt if messages is None else render_plain(messages))

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def too_long(self, prompt: str, max_tokens: int) -> bool:
        messages = messages_of(prompt)
        if messages is not None:  # what the turns say, as for plain text (the template's tokens are free)
            return sum(self._count(m["content"]) for m in messages) > max_tokens
        return self._count(prompt) > max_tokens

    def _truncate(self, prompt: str, max_tokens: int):
        if messages_of(prompt) is not None:
            return self._truncate_turns(prompt, max_tokens)
        ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        if len(ids) <= max_tokens:
            return prompt
        self.truncated_digests.add(hashlib.blake2b(prompt.encode(), digest_size=16).digest())
        return self._cut_middle(ids, max_tokens)

    def _cut_middle(self, ids: list[int], max_tokens: int) -> str:
        # Cut the middle, not the end: instructions before the text ("Summarize:") and after it
        # ("Answer with one word.", the question of a k-shot prompt) both survive.
        if max_tokens <= 0:
            return ""
        head = max_tokens // 2
        return self.tokenizer.decode(ids[:head]) + self.tokenizer.decode(ids[len(ids) - (max_tokens - head) :])

    def _truncate_turns(self, prompt: str, max_tokens: int) -> list[dict[str, str]]:
        """A conversation's turns within max_tokens (of content): the oldest exchanges after the system
        prompt go first, whole (the last turn, the one answered, always stays), then the middle of the
        longest turn left is cut as plain prompts are."""
        turns = [dict(m) for m in messages_of(prompt)]
        sizes = [self._count(m["content"]) for m in turns]
        if sum(sizes) <= max_tokens:
            return turns
        self.truncated_digests.add(hashlib.blake2b(str(prompt).encode(), digest_size=16).digest())
        first = next((i for i, m in enumerate(turns) if m["role"] != "system"), len(turns) - 1)
        while sum(sizes) > max_tokens and first < len(turns) - 1:
            # A user turn goes with the assistant turns answering it: templates expect a user turn first.
            del turns[first], sizes[first]
            while first < len(turns) - 1 and turns[first]["role"] == "assistant":
                del turns[first], sizes[first]
        while sum(sizes) > max_tokens:  # a long system prompt can need more than one turn cut
            longest = max(range(len(turns)), key=sizes.__getitem__)
            keep = max(sizes[longest] - (sum(sizes) - max_tokens), 0)
            ids = self.tokenizer(turns[longest]["content"], add_special_tokens=False).input_ids
            turns[longest]["content"], sizes[longest] = self._cut_middle(ids, keep), keep
        return turns

    def prompt_ids(self, prompt: str, max_source_tokens: int = 512) -> list[int]:
        text = self.format_prompt(self._truncate(prompt, max_source_tokens))
        return self.tokenizer(text, add_special_tokens=self.kind.prompt_special_tokens()).input_ids

    # ---- training features ------------------------------------------------------------------
    def encode(self, prompt: str, target: str, max_source_tokens: int = 512, max_target_tokens: int = 128) -> dict:
        source = self.prompt_ids(prompt, max_source_tokens)
        return self.kind.features(source, self.kind.target_ids(self.tokenizer, target, max_target_tokens))

    def collate(self, features: list[dict]) -> dict[str, torch.Tensor]:
        """Right-pad to the longest example of this batch (not to a fixed 512)."""
        ids, mask = right_pad([f["input_ids"] for f in features], self.tokenizer.pad_token_id)
        labels = right_pad([f["labels"] for f in features], IGNORE)[0]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    # ---- generation -------------------------------------------------------------------------
    def pad_prompts(self, encoded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask) of a batch, padded on the side the model kind generates from."""
        width = max(len(seq) for seq in encoded)
        ids = torch.full((len(encoded), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, seq in enumerate(encoded):
            cols = self.kind.prompt_columns(width, len(seq))
            ids[row, cols], mask[row, cols] = torch.tensor(seq), 1
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def generate_ids(
        self,
        model: nn.Module,
        prompts: list[str],
        max_new_tokens: int,
        batch_size: int = 16,
        num_beams: int = 1,
        max_source_tokens: int = 512,
        progress=None,
        share_prefix: bool = True,
        kv_cache_gb: float | None = None,
    ) -> list[list[int]]:
        """New token ids of each prompt, up to and including EOS, in the order of ``prompts``.

        Decoded by peftlab's own loop (models/decode.py, models/beam.py), the same for every method;
        ``share_prefix``: a batch's shared prompt prefix prefilled once (models/shared_prefix.py);
        ``kv_cache_gb``: fewer than ``batch_size`` rows where their KV cache would pass it (models/kv_budget.py)."""
        tok = self.tokenizer
        encoded = [self.prompt_ids(p, max_source_tokens) for p in prompts]
        # Longest first: batches of similar length waste little compute on padding, and an
        # out-of-memory error shows up in the first batch rather than the last.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        out: list[list[int] | None] = [None] * len(encoded)
        was_training = model.training
        model.eval()
        kwargs = {
            "max_new_tokens": max_new_tokens,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
            "share_prefix": share_prefix,
        }
        per_token = kv_bytes_per_token(core_model(model).config) * num_beams
        groups = batches(
            order,
            [len(e) for e in encoded],
            batch_size,
            equal_lengths=prefix_needs_equal_lengths(model),
            row_bytes=lambda length: (length + max_new_tokens) * per_token,
            budget=None if kv_cache_gb is None else kv_cache_gb * GB,
        )
        for idx in groups:
            ids, mask = self.pad_prompts([encoded[i] for i in idx])
            with self.numerics():
                new = (
                    greedy(model, ids, mask, **kwargs)
                    if num_beams == 1
                    else beam_search(model, ids, mask, num_beams=num_beams, **kwargs)
                )
            for row, i in enumerate(idx):
                out[i] = new[row]
            if progress is not None:
                progress(len(idx))
        model.train(was_training)
        return out  # type: ignore[return-value]

    def generate(self, model: nn.Module, prompts: list[str], max_new_tokens: int, **options) -> list[str]:
        """Decoded continuations, in the order of ``prompts`` (options: those of ``generate_ids``)."""
        return self.texts(self.generate_ids(model, prompts, max_new_tokens, **options))

    def texts(self, ids: list[list[int]]) -> list[str]:
        """Generated token ids as text, special tokens dropped."""
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
