"""Where the embedded input sequence enters the transformer stack, so IG can move it along a path.

The hook point is a forward pre-hook on the stack that reads the token embeddings: the decoder stack
of a causal model (LlamaModel, GPTNeoModel), the encoder stack of an encoder-decoder (T5Stack).
By then every method has formed the full input sequence: peft's prompt tuning has prepended its
virtual tokens to the word embeddings and passes ``inputs_embeds`` down, so the virtual tokens are
on the path and get attributions like real tokens. (Hooking the word-embedding module instead would
miss them: peft's PromptEmbedding is a separate module.) Prefix tuning's virtual keys/values enter
as a KV cache, not as embeddings, so they are part of the function, not of its input.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

from peftlab.models.kind import ModelKind


def input_stack(model: nn.Module, kind: ModelKind) -> nn.Module:
    """The transformers stack that embeds the input tokens, inside any peft wrapper."""
    return kind.input_stack(model.get_base_model() if hasattr(model, "get_base_model") else model)


class EmbeddingPath:
    """Context manager: while active, ``transform`` (embeddings -> embeddings) replaces the
    ``inputs_embeds`` the stack is called with; ``captured`` keeps the last untransformed ones."""

    def __init__(self, model: nn.Module, kind: ModelKind):
        self.stack = input_stack(model, kind)
        self.names = list(inspect.signature(self.stack.forward).parameters)
        self.transform: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.captured: torch.Tensor | None = None

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict):
        # GPT-Neo passes input_ids positionally; name every argument so it can be swapped.
        kwargs = {**dict(zip(self.names, args)), **kwargs}
        ids = kwargs.pop("input_ids", None)
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:  # plain models and Linear-wrapping methods: embed as the stack itself would
            embeds = module.get_input_embeddings()(ids)
        self.captured = embeds.detach()
        kwargs["inputs_embeds"] = self.transform(embeds) if self.transform is not None else embeds
        return (), kwargs

    @contextmanager
    def active(self):
        handle = self.stack.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()
            self.transform = None

    def token_embedding(self, token_id: int) -> torch.Tensor:
        return self.stack.get_input_embeddings().weight[token_id].detach()

    def mean_embedding(self) -> torch.Tensor:
        return self.stack.get_input_embeddings().weight.detach().mean(0)
