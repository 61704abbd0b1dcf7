"""How a decoder-only model (GPT-Neo, Llama/SmolLM2) reads a task: prompt and target are one sequence.

Training features label only the target and its end-of-sequence token (the prompt's labels are
``IGNORE``), position t predicts token t + 1, generation prompts are left-padded so every row's next
token is at the end, and attribution moves the embeddings entering the decoder stack.

``Causal`` implements every operation of ``ModelKind`` (models/kind.py); ``CausalDecoder`` is how
peftlab decodes such a model (the search loops are models/decode.py and models/beam.py).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM

from peftlab.models.forward import Forward, core_model, output_head, positions, prompt_learning, soft_prompt
from peftlab.models.kv_room import repeated, reserve
from peftlab.models.prefill_groups import Piece, length_groups, merged, sorted_groups, trimmed
from peftlab.models.rows import IGNORE, right_pad
from peftlab.models.shared_prefix import MIN_SHARED, shared_length, split


class CausalDecoder:
    """Decoder-only models. Inputs are left-padded: every row's next token is at the end.

    A prefill is a *head* shared by every row (a prefix's virtual tokens; the prompt prefix every row
    shares, run once: models/shared_prefix.py) and each row's own tokens on top of it, run in groups of
    similar length (models/prefill_groups.py) and merged into one left-padded cache with ``room``
    positions reserved for the tokens to come (models/kv_room.py)."""

    def __init__(self, model: nn.Module, share_prefix: bool = True, room: int = 0):
        self.model, self.learning, self.fwd = model, prompt_learning(model), Forward(core_model(model))
        self.cache = self.mask = self.next_position = None
        config = core_model(model).config
        # Padding between the head and a row's tokens changes what a row sees under local or
        # sliding-window attention: such models run the batch as one padded block, as it came.
        self.ragged = not Causal().padding_moves_prefix(config)
        self.share_prefix, self.room = share_prefix and self.ragged, room

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        shared = shared_length(ids, mask) if self.share_prefix else 0
        if shared >= MIN_SHARED:
            cut = split(ids, mask, shared)
            (head, head_mask), ids, mask = self._shared_head(cut.prefix), cut.suffix, cut.suffix_mask
        else:
            virtual = self._virtual() if self.learning == "prefix" else 0
            head, head_mask = None, mask.new_ones((1, virtual))
        groups = length_groups(mask.sum(-1).tolist()) if self.ragged else [list(range(ids.shape[0]))]
        pieces = [self._rows(head, head_mask, *trimmed(ids[g], mask[g]), soft=shared < MIN_SHARED) for g in groups]
        self.cache, self.mask = pieces[0].cache, pieces[0].mask
        if self.ragged:
            self.cache.layers, self.mask = merged(pieces, head_mask.shape[1], self.room)
        else:  # one padded block; its window layers keep their own slots
            reserve(self.cache, self.room)
        self.next_position = positions(self.mask)[:, -1:] + 1
        return torch.cat([p.logits for p in pieces])

    def _shared_head(self, prefix: torch.Tensor) -> tuple[object, torch.Tensor]:
        """The cache and mask (1, head) of the shared prompt prefix at batch 1, after the soft prompt or
        the prefix when there is one."""
        virtual = self._virtual() if self.learning else 0
        inputs: dict = {}
        if self.learning == "prompt":
            embeds = self.fwd.core.get_input_embeddings()(prefix)
            inputs["inputs_embeds"] = torch.cat([soft_prompt(self.model, 1, embeds), embeds], dim=1)
        else:
            inputs["input_ids"] = prefix
        cache = self.model.get_prompt(batch_size=1) if self.learning == "prefix" else None
        head_mask = prefix.new_ones((1, virtual + prefix.shape[1]))
        if self.fwd.takes_positions:  # the input's width: the prefix, after the soft prompt when there is one
            inputs["position_ids"] = positions(head_mask)[:, -next(iter(inputs.values())).shape[1] :]
        _, cache = self.fwd(cache, attention_mask=head_mask, **inputs)
        return cache, head_mask

    def _rows(self, head, head_mask: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, soft: bool) -> Piece:
        """Left-padded rows on top of the head (a copy of its cache per row); with ``soft`` a prompt-tuned
        row gets its soft prompt right before its first token."""
        rows, inputs = ids.shape[0], {}
        if soft and self.learning == "prompt":
            inputs["inputs_embeds"], mask = self._embed_with_soft_prompt(ids, mask)
        else:
            inputs["input_ids"] = ids
        if head is not None:
            cache = repeated(head, rows)
        else:  # the prefix is the cache's first entries; every row attends to it
            cache = self.model.get_prompt(batch_size=rows) if self.learning == "prefix" else None
        full = torch.cat([head_mask.expand(rows, -1), mask], dim=1)
        if self.fwd.takes_positions:
            inputs["position_ids"] = positions(full)[:, -mask.shape[1] :]
        logits, cache = self.fwd(cache, attention_mask=full, **inputs)
        return Piece(logits, cache, full)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        extra = {"position_ids": self.next_position} if self.fwd.takes_positions else {}
        logits, self.cache = self.fwd(self.cache, input_ids=tokens[:, None], attention_mask=self.mask, **extra)
        self.next_position = self.next_position + 1
        return logits

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows (beam search: each new beam continues from its parent's cache)."""
        self.cache.reorder_cache(rows)
        self.mask, self.next_position = self.mask[rows], self.next_position[rows]

    def rows_copy(self, rows: torch.Tensor) -> CausalDecoder:
        """A decoder over these rows of this one's cache, which stays as it is (a row may come twice).
        The cache and its layers are shallow copies whose tensors ``select`` replaces by indexed copies."""
        other = copy.copy(self)
        other.cache = copy.copy(self.cache)
        other.cache.layers = [copy.copy(layer) for layer in self.cache.layers]
        other.select(rows)
        return other

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Go on with these rows only (greedy search drops the rows that have ended)."""
        self.select(rows)

    def _virtual(self) -> int:
        return self.model.active_peft_config.num_virtual_tokens

    def _embed_with_soft_prompt(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row as [padding][soft prompt][tokens]: the prompt right before the row's first token."""
        embeds = self.fwd.core.get_input_embeddings()(ids)
        prompts = soft_prompt(self.model, ids.shape[0], embeds)
        pad = (mask == 0).sum(-1).tolist()  # left padding: the zeros lead each row
        rows = [torch.cat([embeds[r, :p], prompts[r], embeds[r, p:]]) for r, p in enumerate(pad)]
        ones = torch.ones_like(mask[:, :1]).expand(-1, prompts.shape[1])
        masks = [torch.cat([mask[r, :p], ones[r], mask[r, p:]]) for r, p in enumerate(pad)]
        return torch.stack(rows), torch.stack(masks)


class Causal:
    """The decoder-only kind: every operation of ``ModelKind`` (models/kind.py)."""

    encoder_decoder = False
    uses_chat_template = True  # a chat template formats a conversation for a decoder to continue
    auto_class = AutoModelForCausalLM
    peft_task_type = "CAUSAL_LM"  # peft's TaskType.CAUSAL_LM

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

    def option_logprobs(
        self, model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, options: list[list[list[int]]], pad: int
    ) -> torch.Tensor:
        """Summed log-probability of every option (flat, prompt by prompt) after its prompt, the prompt run
        once (models/option_scores.py tells why): ``ids``/``mask`` are the left-padded prompts. The
        prefill's last logits score each option's first token; the rest of the options run on top of
        their prompt's cache, repeated per option, in groups of similar length: padded to the longest
        option, CommonsenseQA's options (1-8 tokens, 2.2 on average) were three quarters padding."""
        device = ids.device
        flat = [o for opts in options for o in opts]
        rest = {i: len(o) - 1 for i, o in enumerate(flat) if len(o) > 1}  # tokens fed after the first
        decoder = CausalDecoder(model, room=max(rest.values(), default=0))  # room: no cache copy per step
        first = torch.log_softmax(decoder.prefill(ids, mask).float(), dim=-1)  # (prompts, vocab)
        rows = torch.tensor([i for i, opts in enumerate(options) for _ in opts], device=device)
        starts = torch.tensor([o[0] if o else 0 for o in flat], device=device)
        scores = first[rows, starts] * torch.tensor([bool(o) for o in flat], device=device)
        for members in sorted_groups(rest):
            on_top = decoder.rows_copy(rows[members])
            scores[members] += self._continued(on_top, [flat[i] for i in members], pad)
        return scores

    @staticmethod
    def _continued(decoder: CausalDecoder, options: list[list[int]], pad: int) -> torch.Tensor:
        """Summed log-probability of each option's tokens after its first, the options fed on top of
        ``decoder``'s rows (one per option)."""
        device, width = decoder.mask.device, max(len(o) for o in options) - 1
        feed, feed_mask = right_pad([o[:-1] for o in options], pad, width)
        targets, target_mask = right_pad([o[1:] for o in options], 0, width)
        logits = decoder.fwd.all_logits(
            decoder.cache,
            input_ids=feed.to(device),
            attention_mask=torch.cat([decoder.mask, feed_mask.to(device)], dim=1),
            position_ids=decoder.next_position + torch.arange(width, device=device),
        )
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.to(device)[..., None]).squeeze(-1)
        return (logp * target_mask.to(device)).sum(-1)

    # ---- decoding ---------------------------------------------------------------------------
    def decoder(self, model: nn.Module, share_prefix: bool = True, room: int = 0) -> CausalDecoder:
        return CausalDecoder(model, share_prefix, room)

    def padding_moves_prefix(self, config) -> bool:
        """Whether left padding changes what a prefix-tuned row sees: with local or sliding-window
        attention (GPT-Neo's local layers, Mistral) a key's reach is counted in cache slots, and the
        padding sits between the prefix (the cache's first slots) and the row's tokens."""
        local = "local" in (getattr(config, "attention_layers", None) or [])
        return local or bool(getattr(config, "sliding_window", None))

    # ---- structure, for methods --------------------------------------------------------------
    def stacks(self, model: nn.Module) -> dict[str, nn.Module]:
        """The transformer stacks by role: one, the decoder (LlamaModel, GPTNeoModel)."""
        return {"decoder": model.get_decoder()}

    def prefix_shape(self, config) -> dict:
        return {}  # peft sizes a decoder-only model's prefix right from its config

    def prefix_activations(self, base: nn.Module, num_tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Per layer, the (keys, values) that ``num_tokens`` vocabulary tokens, drawn from torch's global
        generator, leave in ``base``'s cache, each (1, kv_heads, num_tokens, head_dim): what the prefix
        would hold had those tokens stood before the input (prefix tuning's init from activations)."""
        ids = torch.randint(0, base.config.vocab_size, (1, num_tokens)).to(base.device)
        cache = base(input_ids=ids, use_cache=True).past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    # ---- measuring --------------------------------------------------------------------------
    def probe_batch(self, s: int, t: int, device) -> dict[str, torch.Tensor]:
        """A 1 x ``s`` batch of token 1 (which every vocabulary has) for the FLOPs probe. Prompt and
        target are one sequence, so no decoder length ``t`` enters it: the labels are the input."""
        ids = torch.ones((1, s), dtype=torch.long, device=device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}

    def decoder_length(self, batch: dict[str, torch.Tensor]) -> int:
        return 0  # no separate decoder input: the input's length counts every token

    def labelled_rows_head(self, model: nn.Module) -> nn.Module | None:
        """The module ``loss_sum`` runs on the labelled positions only: the output head."""
        return output_head(model)

    def prefix_reaches(self, query_tokens: tuple[int, int, int]) -> bool:
        return True  # one stack: peft's prefix reaches every self-attention

    def forgetting_split(self, ids: list[int]) -> tuple[list[int], list[int]]:
        """(input ids, labels) of a text for the forgetting measure: a language model scores every token."""
        return ids, ids

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
