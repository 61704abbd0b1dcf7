"""How an encoder-decoder model (T5) reads a task: the prompt in the encoder, the target in the decoder.

The decoder sees only the target, so nearly every decoder position has a label; its inputs are the
labels shifted right, built by the model's own ``prepare_decoder_input_ids_from_labels``. Prompts
carry the tokenizer's end marker (``</s>``), generation prompts are right-padded (the decoder starts
fresh for every row), and attribution moves the embeddings entering the encoder stack.

``Seq2Seq`` implements every operation of ``ModelKind`` (models/kind.py); ``Seq2SeqDecoder`` is how
peftlab decodes such a model (the search loops are models/decode.py and models/beam.py).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSeq2SeqLM

from peftlab.errors import PeftlabError
from peftlab.models.forward import Forward, core_model, prompt_learning, soft_prompt
from peftlab.models.kv_room import reserve
from peftlab.models.prefill_groups import sorted_groups
from peftlab.models.rows import IGNORE, right_pad


class Seq2SeqDecoder:
    """Encoder-decoder models. Inputs are right-padded; the encoder runs once."""

    def __init__(self, model: nn.Module, room: int = 0):
        self.model, self.learning, self.fwd = model, prompt_learning(model), Forward(core_model(model))
        self.cache = self.encoder_outputs = self.mask = None
        self.room = room  # decoder self-attention positions reserved after the first step (models/kv_room.py)

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.encode(ids, mask)
        start = self.fwd.core.config.decoder_start_token_id
        if start is None:
            raise PeftlabError("generation: the model's config has no decoder_start_token_id")
        return self.step(torch.full((ids.shape[0],), start, dtype=torch.long, device=ids.device))

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Run the encoder (with the soft prompt or prefix of prompt learning) and keep its output."""
        core = self.fwd.core
        if self.learning == "prompt":  # [soft prompt][tokens][padding], as peft trains it
            embeds = core.get_input_embeddings()(ids)
            prompts = soft_prompt(self.model, ids.shape[0], embeds)
            mask = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, prompts.shape[1]), mask], dim=1)
            encoded = core.get_encoder()(
                inputs_embeds=torch.cat([prompts, embeds], dim=1), attention_mask=mask, return_dict=True
            )
        else:
            encoded = core.get_encoder()(input_ids=ids, attention_mask=mask, return_dict=True)
        if self.learning == "prefix":  # the prefix reaches the decoder's self-attention through its cache
            self.cache = self.model.get_prompt(batch_size=ids.shape[0])
        self.encoder_outputs, self.mask = encoded, mask

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, self.cache = self.fwd(
            self.cache,
            encoder_outputs=self.encoder_outputs,
            attention_mask=self.mask,
            decoder_input_ids=tokens[:, None],
        )
        if self.room:
            reserve(self.cache, self.room)
            self.room = 0
        return logits

    def select(self, rows: torch.Tensor) -> None:
        # Beams of one example share its encoder output, so only the decoder cache moves.
        self.cache.reorder_cache(rows)

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Go on with these rows only (greedy search drops the rows that have ended): their cache, their
        encoder output and its mask."""
        self.cache.reorder_cache(rows)
        self.encoder_outputs.last_hidden_state = self.encoder_outputs.last_hidden_state[rows]
        self.mask = self.mask[rows]

    def rows_copy(self, rows: torch.Tensor) -> Seq2SeqDecoder:
        """Before any decoder step: a decoder whose row r is encoder row ``rows[r]``; this one stays as it is."""
        other = copy.copy(self)
        other.encoder_outputs = type(self.encoder_outputs)(last_hidden_state=self.encoder_outputs.last_hidden_state)
        other.repeat_encoded(rows)
        return other

    def repeat_encoded(self, rows: torch.Tensor) -> None:
        """Before any decoder step: row r becomes encoder row ``rows[r]`` (option scoring repeats a
        prompt's encoding for each of its options); a prefix cache is made for the new rows."""
        self.encoder_outputs.last_hidden_state = self.encoder_outputs.last_hidden_state[rows]
        self.mask = self.mask[rows]
        if self.learning == "prefix":
            self.cache = self.model.get_prompt(batch_size=len(rows))


class Seq2Seq:
    """The encoder-decoder kind: every operation of ``ModelKind`` (models/kind.py)."""

    encoder_decoder = True
    uses_chat_template = False  # the encoder reads the prompt as plain text (T5 has no chat template)
    auto_class = AutoModelForSeq2SeqLM
    peft_task_type = "SEQ_2_SEQ_LM"  # peft's TaskType.SEQ_2_SEQ_LM

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

    def option_logprobs(
        self, model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, options: list[list[list[int]]], pad: int
    ) -> torch.Tensor:
        """Summed log-probability of every option (flat, prompt by prompt) given its prompt: the encoder
        runs once per prompt (``ids``/``mask`` right-padded, as in training), the decoder once per option
        over a copy of that encoding, reading [start] + option[:-1] and scored on the option. The options
        run in groups of similar length, each padded to its own longest (models/option_scores.py)."""
        device = ids.device
        decoder = Seq2SeqDecoder(model)
        decoder.encode(ids, mask)
        start = decoder.fwd.core.config.decoder_start_token_id
        if start is None:
            raise PeftlabError("scoring: the model's config has no decoder_start_token_id")
        flat = [o for opts in options for o in opts]
        rows = torch.tensor([i for i, opts in enumerate(options) for _ in opts], device=device)
        widths = {i: max(1, len(o)) for i, o in enumerate(flat)}  # an empty option still needs one decoder step
        scores = torch.zeros(len(flat), device=device)
        for members in sorted_groups(widths):
            scores[members] = self._scored(decoder.rows_copy(rows[members]), [flat[i] for i in members], start, pad)
        return scores

    @staticmethod
    def _scored(decoder: Seq2SeqDecoder, options: list[list[int]], start: int, pad: int) -> torch.Tensor:
        """Summed log-probability of each option, the decoder reading [start] + option[:-1] over its row's encoding."""
        device, width = decoder.mask.device, max(1, max(len(o) for o in options))
        feed = right_pad([[start, *o[:-1]] for o in options], pad, width)[0].to(device)
        labels = right_pad(options, IGNORE, width)[0].to(device)
        inputs = {"encoder_outputs": decoder.encoder_outputs, "attention_mask": decoder.mask, "decoder_input_ids": feed}
        logits = decoder.fwd.all_logits(decoder.cache, **inputs)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
        return (logp * (labels != IGNORE)).sum(-1)

    # ---- decoding ---------------------------------------------------------------------------
    def decoder(self, model: nn.Module, share_prefix: bool = True, room: int = 0) -> Seq2SeqDecoder:
        # The encoder reads each prompt whole, in both directions: no prefix of it can be computed alone.
        return Seq2SeqDecoder(model, room)

    def padding_moves_prefix(self, config) -> bool:
        return False  # right padding, after the tokens; the decoder starts fresh for every row

    # ---- structure, for methods --------------------------------------------------------------
    def stacks(self, model: nn.Module) -> dict[str, nn.Module]:
        """The transformer stacks by role: the decoder and the encoder (T5Stack each)."""
        return {"decoder": model.get_decoder(), "encoder": model.get_encoder()}

    def prefix_shape(self, config) -> dict:
        """peft's prefix sizes for T5, read from the decoder, where the prefix lives (methods/prefix_tuning.py):
        peft would read num_hidden_layers (the *encoder's* on T5) and d_model, not num_heads * d_kv."""
        if not hasattr(config, "d_kv"):
            return {}
        heads = config.num_heads
        return {"num_layers": config.num_decoder_layers, "token_dim": heads * config.d_kv, "num_attention_heads": heads}

    def prefix_activations(self, base: nn.Module, num_tokens: int) -> None:
        return None  # not built for the decoder's prefix: peft's own init is kept (and no random draw made)

    # ---- measuring --------------------------------------------------------------------------
    def probe_batch(self, s: int, t: int, device) -> dict[str, torch.Tensor]:
        """A 1 x ``s`` encoder batch of token 1 (which every vocabulary has) with ``t`` labels of it, the
        decoder's length, for the FLOPs probe."""
        ids = torch.ones((1, s), dtype=torch.long, device=device)
        labels = torch.ones((1, t), dtype=torch.long, device=device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    def decoder_length(self, batch: dict[str, torch.Tensor]) -> int:
        """The decoder's width: the labels shifted right (same width), unless given explicitly."""
        decoder = batch["decoder_input_ids"] if "decoder_input_ids" in batch else batch["labels"]
        return decoder.shape[1]

    def labelled_rows_head(self, model: nn.Module) -> None:
        return None  # ``loss_sum`` runs the head on every decoder position

    def prefix_reaches(self, query_tokens: tuple[int, int, int]) -> bool:
        """Whether peft's prefix reaches a self-attention whose queries are c + e*S + d*T tokens per example
        (S input, T decoder length): on T5 only the decoder's, whose queries grow with T."""
        return query_tokens[2] != 0

    def forgetting_split(self, ids: list[int]) -> tuple[list[int], list[int]]:
        """(encoder ids, labels) of a text for the forgetting measure: an encoder-decoder is not a language
        model, so it reads the first half and is scored on the second (a prefix-LM loss)."""
        half = max(1, len(ids) // 2)
        return ids[:half], ids[half:] or ids[-1:]

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
