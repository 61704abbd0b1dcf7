"""What a model kind must do, and which kind a model is.

A decoder-only model (GPT-Neo, Llama/SmolLM2) reads prompt and target as one sequence; an
encoder-decoder (T5) reads the prompt in its encoder and the target in its decoder. Everything that
depends on this difference is an operation of ``ModelKind`` below, implemented twice: ``CAUSAL``
(models/causal.py) and ``SEQ2SEQ`` (models/seq2seq.py). ``kind_of_config`` is the one place that
decides which a model is (from its config's ``is_encoder_decoder``, never from its name); everything
else gets the strategy (``Backbone.kind``, ``kind_of(model)``) and calls it, so adding a kind means
writing one class, not finding the branches.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from peftlab.models.causal import CAUSAL
from peftlab.models.forward import core_model, output_head
from peftlab.models.rows import IGNORE, right_pad
from peftlab.models.seq2seq import SEQ2SEQ

# IGNORE, right_pad and output_head are imported from here by older callers.
__all__ = ["IGNORE", "Decoder", "ModelKind", "kind_of", "kind_of_config", "output_head", "right_pad"]

Batch = dict[str, torch.Tensor]


@runtime_checkable
class Decoder(Protocol):
    """peftlab's decoding over one model's forward and KV cache (models/decode.py, models/beam.py)."""

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the padded prompts; the float logits of each row's next token."""
        ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; the float logits of the next."""
        ...

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows of the state (beam search reorders beams)."""
        ...

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Go on with these rows of the batch only (greedy search drops the rows that have ended)."""
        ...


@runtime_checkable
class ModelKind(Protocol):
    """Every operation that differs between decoder-only and encoder-decoder models."""

    encoder_decoder: bool  # reported (summary, tests); never a reason to branch
    uses_chat_template: bool  # whether a tokenizer's chat template formats the prompt
    auto_class: type  # the transformers Auto class that loads such a model
    peft_task_type: str  # peft's TaskType value for such a model

    # encoding (Backbone.encode, inspect)
    def plain_prompt(self, prompt: str) -> str: ...
    def prompt_special_tokens(self) -> bool: ...
    def target_ids(self, tokenizer, target: str, max_target_tokens: int) -> list[int]: ...
    def features(self, source: list[int], target: list[int]) -> dict: ...
    def source_length(self, features: dict) -> int: ...
    def prompt_columns(self, width: int, length: int) -> slice: ...

    # the loss and the counts a budget and FLOPs read
    def batch_tokens(self, batch: Batch) -> int: ...
    def labelled_tokens(self, batch: Batch) -> int: ...
    def loss_sum(self, model: nn.Module, head: nn.Module | None, batch: Batch) -> torch.Tensor: ...

    # scoring (tasks/loglik.py, models/option_scores.py)
    def continuation_logprobs(
        self, model: nn.Module, sources: list[list[int]], continuations: list[list[int]], pad: int, device
    ) -> list[float]: ...
    def option_logprobs(
        self, model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, options: list[list[list[int]]], pad: int
    ) -> torch.Tensor: ...

    # decoding (models/decode.py)
    def decoder(self, model: nn.Module, share_prefix: bool = True, room: int = 0) -> Decoder: ...
    def padding_moves_prefix(self, config) -> bool: ...

    # structure, for methods (last_layers, prefix_tuning)
    def stacks(self, model: nn.Module) -> dict[str, nn.Module]: ...
    def prefix_shape(self, config) -> dict: ...
    def prefix_activations(
        self, base: nn.Module, num_tokens: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]] | None: ...

    # measuring (measure/flops.py, measure/forgetting.py)
    def probe_batch(self, s: int, t: int, device) -> Batch: ...
    def decoder_length(self, batch: Batch) -> int: ...
    def labelled_rows_head(self, model: nn.Module) -> nn.Module | None: ...
    def prefix_reaches(self, query_tokens: tuple[int, int, int]) -> bool: ...
    def forgetting_split(self, ids: list[int]) -> tuple[list[int], list[int]]: ...

    # attribution (inspect/)
    def input_stack(self, base: nn.Module) -> nn.Module: ...
    def attributed_input(self, prompt_ids: list[int], output_ids: list[int]) -> list[int]: ...
    def output_logits(self, model: nn.Module, ids: torch.Tensor, output: torch.Tensor) -> torch.Tensor: ...


def kind_of_config(config) -> ModelKind:
    """The kind of a model with this transformers config: the one place that decides it."""
    return SEQ2SEQ if getattr(config, "is_encoder_decoder", False) else CAUSAL


def kind_of(model: nn.Module) -> ModelKind:
    """The kind of ``model``, a transformers model or a peft wrapper of one."""
    return kind_of_config(core_model(model).config)
