"""The training loss, computed only where there is something to learn.

A decoder-only model's output head turns every position's hidden state into logits over the whole
vocabulary (49,152 words for SmolLM2): about a fifth of the model's compute per token, and a
[batch, length, vocabulary] float tensor that, with its softmax and its gradient, dominated peak
memory. But the loss reads only the positions whose next token has a label: the target, not the
prompt (most of a summarization example) and not the padding. So while the model runs, a
pre-hook on the head hands it only those positions' hidden states. transformers' ``logits_to_keep``
cannot do this: it keeps the same positions in every row, and here each row's target starts
elsewhere.

The loss is a sum over labelled tokens divided by the number of labelled tokens in the whole
optimizer step (every micro-batch of every process), so gradient accumulation and data-parallel
processes give the gradient of one big batch, whatever the split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from peftlab.models.backbone import IGNORE


def output_head(model: nn.Module) -> nn.Module | None:
    """The Linear that maps hidden states to vocabulary logits (peft wrappers delegate to the base)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if get is not None else None
    return head if isinstance(head, nn.Module) else None


def labelled_tokens(batch: dict[str, torch.Tensor], is_seq2seq: bool) -> int:
    """Tokens that carry a loss: decoder labels (seq2seq) or next-token labels (decoder-only)."""
    labels = batch["labels"]
    return int((labels != IGNORE).sum() if is_seq2seq else (labels[:, 1:] != IGNORE).sum())


def loss_sum(
    model: nn.Module, head: nn.Module | None, batch: dict[str, torch.Tensor], is_seq2seq: bool
) -> torch.Tensor:
    """Summed cross-entropy of ``batch``'s labelled tokens (divide by the step's labelled_tokens)."""
    if is_seq2seq:
        # The decoder sees only the target (no prompt), so nearly every position has a label. The
        # decoder input is built here, as the model would, so the model does not compute a loss too.
        shift = getattr(getattr(model, "module", model), "prepare_decoder_input_ids_from_labels", None)  # DDP wraps
        inputs = dict(batch)
        if shift is not None:
            inputs["decoder_input_ids"] = shift(labels=inputs.pop("labels"))
        logits = model(**inputs).logits
        return F.cross_entropy(
            logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE, reduction="sum"
        )
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
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits
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
