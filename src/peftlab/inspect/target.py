"""The attributed quantity: log p(output | prompt), the summed log-probabilities of the model's own
output tokens, teacher-forced after the prompt. The output is what the model produces: greedy
generation (generate tasks), or the label word / option it picks by log-likelihood (classify,
multiple choice), so the attribution explains the prediction that is scored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from peftlab.inspect.path import EmbeddingPath
from peftlab.models.backbone import Backbone
from peftlab.models.decode import greedy


def greedy_output(backbone: Backbone, model: nn.Module, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation of one unpadded prompt, up to and including the first EOS (peftlab's decoder,
    as evaluation decodes it)."""
    tok = backbone.tokenizer
    ids = torch.tensor([prompt_ids], device=backbone.device)
    return greedy(
        model,
        ids,
        torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )[0]


def output_logprob(
    backbone: Backbone, model: nn.Module, path: EmbeddingPath, prompt_ids: list[int], output_ids: list[int]
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor], int]:
    """(x, f, virtual): x = the embeddings on the attribution path (virtual tokens, then the prompt's),
    f(z) = log p(output | z) for a batch z of such embeddings, and how many virtual tokens lead x.

    Causal models read prompt and output as one sequence; only the prompt's positions move along the
    path, the output tokens' embeddings stay those of the output (they are the target, not the input).
    Must run inside ``path.active()``.
    """
    device = backbone.device
    src = torch.tensor([backbone.kind.attributed_input(prompt_ids, output_ids)], device=device)
    target = torch.tensor([output_ids], device=device)

    def run(rows: int):
        return backbone.kind.output_logits(model, src.expand(rows, -1), target)

    path.transform = None
    with torch.no_grad():
        run(1)
    full = path.captured[0]  # (virtual + sequence, d_model)
    virtual = full.shape[0] - src.shape[1]
    moving = virtual + len(prompt_ids)
    x, fixed = full[:moving], full[moving:]

    def f(z: torch.Tensor) -> torch.Tensor:
        path.transform = lambda _: torch.cat([z.to(full.dtype), fixed.expand(len(z), -1, -1)], dim=1)
        logp = torch.log_softmax(run(len(z)).float(), dim=-1)
        return logp.gather(-1, target.expand(len(z), -1)[..., None]).squeeze(-1).sum(-1)

    return x, f, virtual
