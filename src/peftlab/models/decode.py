"""Decoding that peftlab owns: greedy search and beam search over the model's forward and its KV cache.

Why not ``model.generate``: for prompt- and prefix-tuned models it runs through peft's
``prepare_inputs_for_generation``, which depends on how the installed transformers names its inputs.
transformers 5.24 renamed ``past_key_values`` to ``cache`` in every forward, output and generation
kwarg (the old name is accepted until 5.40); peft 0.21.2 still looks the cache up under the old
name, finds none after the first step, and so never cuts the input to the newest token: each step
after the first runs the whole sequence again on top of the cache, and prompt- and prefix-tuned
generation silently stopped matching greedy decoding. This loop depends only on
``forward(input_ids | inputs_embeds, attention_mask, position_ids, cache)``, the interface the
models train through, and on peft's ``get_prompt`` for the soft prompt or the prefix.

It also decodes every method the same way, which an honest comparison needs:
- the soft prompt of prompt tuning goes *after* the left padding, next to the real tokens, and
  positions count from the first real token, so a row of a padded batch sees exactly what it saw
  in training (peft puts the prompt before the padding, so peftlab had to batch those models by
  equal length only);
- pure argmax or beam scores of the log-softmax: no repetition penalty or other processors from a
  checkpoint's ``generation_config``, which would differ between models, not between methods.

Beam search keeps the semantics of transformers' default beam search (length_penalty 1.0 over the
generated length, early_stopping=False), so a plain model gives the same beams as ``generate``;
tests/models/test_decode.py checks both searches against references.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from peftlab.errors import PeftlabError

NEG_INF = float("-inf")


def core_model(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (LoRA/IA3 layers stay injected in it)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def prompt_learning(model: nn.Module) -> str | None:
    """'prompt' (virtual tokens before the input), 'prefix' (virtual keys/values in the cache) or None."""
    cfg = getattr(model, "active_peft_config", None)
    if cfg is None or not getattr(cfg, "is_prompt_learning", False):
        return None
    kind = {"PROMPT_TUNING": "prompt", "P_TUNING": "prompt", "PREFIX_TUNING": "prefix"}.get(cfg.peft_type.value)
    if kind is None:
        raise PeftlabError(
            f"generation: peft type {cfg.peft_type.value} is not supported by peftlab's decoder "
            "(supported prompt-learning types: PROMPT_TUNING, P_TUNING, PREFIX_TUNING)"
        )
    return kind


class Forward:
    """One forward with the cache, whatever the installed transformers calls it."""

    def __init__(self, core: nn.Module):
        params = inspect.signature(core.forward).parameters
        self.core = core
        # transformers >= 5.24: `cache`; before: `past_key_values` (deprecated, removed in 5.40).
        self.cache_name = "cache" if "cache" in params else "past_key_values"
        self.takes_positions = "position_ids" in params
        self.takes_logits_to_keep = "logits_to_keep" in params

    def __call__(self, cache, **inputs) -> tuple[torch.Tensor, object]:
        """(float logits of the last position, the updated cache)."""
        if cache is not None:
            inputs[self.cache_name] = cache
        if self.takes_logits_to_keep:
            inputs["logits_to_keep"] = 1  # the vocabulary projection of the last position only
        out = self.core(**inputs, use_cache=True, return_dict=True)
        new_cache = out["cache"] if "cache" in out else out["past_key_values"]
        return out.logits[:, -1].float(), new_cache

    def all_logits(self, cache, **inputs) -> torch.Tensor:
        """The logits of every input position on top of ``cache`` (option scoring: models/option_scores.py)."""
        if cache is not None:
            inputs[self.cache_name] = cache
        if not self.takes_positions:
            inputs.pop("position_ids", None)
        return self.core(**inputs, use_cache=True, return_dict=True).logits


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position of each token counted over the attended ones only (left padding does not shift it)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _soft_prompt(model: nn.Module, rows: int, like: torch.Tensor) -> torch.Tensor:
    prompts = model.get_prompt(batch_size=rows)
    return prompts[:, : model.active_peft_config.num_virtual_tokens].to(like.dtype)


class CausalDecoder:
    """Decoder-only models. Inputs are left-padded: every row's next token is at the end."""

    def __init__(self, model: nn.Module):
        self.model, self.kind, self.fwd = model, prompt_learning(model), Forward(core_model(model))
        self.cache = self.mask = self.next_position = None

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        inputs: dict = {}
        if self.kind == "prompt":
            inputs["inputs_embeds"], mask = self._embed_with_soft_prompt(ids, mask)
        else:
            inputs["input_ids"] = ids
        if self.kind == "prefix":  # the prefix is the cache's first entries; every row attends to it
            self.cache = self.model.get_prompt(batch_size=ids.shape[0])
            mask = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, self._virtual()), mask], dim=1)
        width = ids.shape[1] + (self._virtual() if self.kind == "prompt" else 0)
        positions = _positions(mask)
        if self.fwd.takes_positions:
            inputs["position_ids"] = positions[:, -width:]
        logits, self.cache = self.fwd(self.cache, attention_mask=mask, **inputs)
        self.mask, self.next_position = mask, positions[:, -1:] + 1
        return logits

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

    def _virtual(self) -> int:
        return self.model.active_peft_config.num_virtual_tokens

    def _embed_with_soft_prompt(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row as [padding][soft prompt][tokens]: the prompt right before the row's first token."""
        embeds = self.fwd.core.get_input_embeddings()(ids)
        prompts = _soft_prompt(self.model, ids.shape[0], embeds)
        pad = (mask == 0).sum(-1).tolist()  # left padding: the zeros lead each row
        rows = [torch.cat([embeds[r, :p], prompts[r], embeds[r, p:]]) for r, p in enumerate(pad)]
        ones = torch.ones_like(mask[:, :1]).expand(-1, prompts.shape[1])
        masks = [torch.cat([mask[r, :p], ones[r], mask[r, p:]]) for r, p in enumerate(pad)]
        return torch.stack(rows), torch.stack(masks)


class Seq2SeqDecoder:
    """Encoder-decoder models. Inputs are right-padded; the encoder runs once."""

    def __init__(self, model: nn.Module):
        self.model, self.kind, self.fwd = model, prompt_learning(model), Forward(core_model(model))
        self.cache = self.encoder_outputs = self.mask = None

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.encode(ids, mask)
        start = self.fwd.core.config.decoder_start_token_id
        if start is None:
            raise PeftlabError("generation: the model's config has no decoder_start_token_id")
        return self.step(torch.full((ids.shape[0],), start, dtype=torch.long, device=ids.device))

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Run the encoder (with the soft prompt or prefix of prompt learning) and keep its output."""
        core = self.fwd.core
        if self.kind == "prompt":  # [soft prompt][tokens][padding], as peft trains it
            embeds = core.get_input_embeddings()(ids)
            prompts = _soft_prompt(self.model, ids.shape[0], embeds)
            mask = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, prompts.shape[1]), mask], dim=1)
            encoded = core.get_encoder()(
                inputs_embeds=torch.cat([prompts, embeds], dim=1), attention_mask=mask, return_dict=True
            )
        else:
            encoded = core.get_encoder()(input_ids=ids, attention_mask=mask, return_dict=True)
        if self.kind == "prefix":  # the prefix reaches the decoder's self-attention through its cache
            self.cache = self.model.get_prompt(batch_size=ids.shape[0])
        self.encoder_outputs, self.mask = encoded, mask

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, self.cache = self.fwd(
            self.cache,
            encoder_outputs=self.encoder_outputs,
            attention_mask=self.mask,
            decoder_input_ids=tokens[:, None],
        )
        return logits

    def select(self, rows: torch.Tensor) -> None:
        # Beams of one example share its encoder output, so only the decoder cache moves.
        self.cache.reorder_cache(rows)

    def repeat_encoded(self, rows: torch.Tensor) -> None:
        """Before any decoder step: row r becomes encoder row ``rows[r]`` (option scoring repeats a
        prompt's encoding for each of its options); a prefix cache is made for the new rows."""
        self.encoder_outputs.last_hidden_state = self.encoder_outputs.last_hidden_state[rows]
        self.mask = self.mask[rows]
        if self.kind == "prefix":
            self.cache = self.model.get_prompt(batch_size=len(rows))


def prefix_needs_equal_lengths(model: nn.Module) -> bool:
    """True when a padded batch would change what a prefix-tuned row sees: with local or sliding-window
    attention (GPT-Neo's local layers, Mistral), a key's reach is counted in cache slots, and left
    padding sits between the prefix (the cache's first slots) and the row's tokens. Such models are
    batched by equal prompt length instead (exact, a little slower)."""
    config = core_model(model).config
    local = "local" in (getattr(config, "attention_layers", None) or []) or getattr(config, "sliding_window", None)
    return prompt_learning(model) == "prefix" and not config.is_encoder_decoder and bool(local)


def decoder_for(model: nn.Module):
    seq2seq = bool(getattr(core_model(model).config, "is_encoder_decoder", False))
    return Seq2SeqDecoder(model) if seq2seq else CausalDecoder(model)


def _until_eos(rows: torch.Tensor, eos: torch.Tensor) -> list[list[int]]:
    """Each row's tokens up to and including its first end-of-sequence token."""
    out, stop = [], set(eos.tolist())
    for row in rows.tolist():
        ends = [i for i, t in enumerate(row) if t in stop]
        out.append(row[: ends[0] + 1] if ends else row)
    return out


@torch.no_grad()
def greedy(
    model: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | list[int],
    pad_token_id: int,
) -> list[list[int]]:
    """New token ids of each row (up to and including EOS): argmax at every step."""
    eos = torch.tensor(eos_token_id, device=ids.device).reshape(-1)
    decoder = decoder_for(model)
    logits = decoder.prefill(ids, mask)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    tokens = []
    for t in range(max_new_tokens):
        token = torch.where(done, pad_token_id, logits.argmax(-1))
        tokens.append(token)
        done |= torch.isin(token, eos)
        if done.all() or t == max_new_tokens - 1:
            break
        logits = decoder.step(token)
    return _until_eos(torch.stack(tokens, dim=1), eos)
