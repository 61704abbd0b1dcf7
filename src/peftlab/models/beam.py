"""Beam search over peftlab's decoder (models/decode.py), with the semantics of transformers' default
beam search, so a plain model gets the beams ``generate(num_beams=k)`` would give:

- each step ranks the 2k best continuations of all k beams by summed log-probability;
- a continuation that ends (EOS, or the max_new_tokens-th token) among the first k of them becomes a
  finished hypothesis, scored by its summed log-probability / (generated length ** length_penalty);
  the k best hypotheses are kept;
- the k best continuations that do not end become the next beams;
- an example stops once it holds k hypotheses and its best beam, scored at its current length,
  cannot beat the worst of them (transformers' early_stopping=False heuristic); its later
  hypotheses are ignored.
"""

from __future__ import annotations

import torch
from torch import nn

from peftlab.models.decode import NEG_INF, _until_eos, decoder_for


class Hypotheses:
    """The k best finished sequences of every example: scores (B, k), tokens (B, k, max_new_tokens)."""

    def __init__(self, batch: int, k: int, max_new_tokens: int, pad: int, device):
        self.scores = torch.full((batch, k), NEG_INF, device=device)
        self.tokens = torch.full((batch, k, max_new_tokens), pad, dtype=torch.long, device=device)
        self.open = torch.ones(batch, dtype=torch.bool, device=device)  # improvement still possible
        self.pad = pad

    def add(self, scores: torch.Tensor, tokens: torch.Tensor) -> None:
        """Offer candidates (B, c) with their tokens (B, c, length); closed examples take none."""
        scores = torch.where(self.open[:, None], scores, NEG_INF)
        padded = torch.nn.functional.pad(tokens, (0, self.tokens.shape[2] - tokens.shape[2]), value=self.pad)
        merged_scores = torch.cat([self.scores, scores], dim=1)
        best = merged_scores.topk(self.scores.shape[1], dim=1).indices
        self.scores = merged_scores.gather(1, best)
        merged = torch.cat([self.tokens, padded], dim=1)
        self.tokens = merged.gather(1, best[..., None].expand(-1, -1, merged.shape[2]))

    def close_where_beaten(self, best_running: torch.Tensor) -> None:
        """Close the examples whose best beam (already length-normalised) cannot beat their worst hypothesis."""
        worst = self.scores.min(dim=1).values  # -inf while fewer than k hypotheses
        self.open &= best_running > worst


@torch.no_grad()
def beam_search(
    model: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    max_new_tokens: int,
    num_beams: int,
    eos_token_id: int | list[int],
    pad_token_id: int,
    length_penalty: float = 1.0,
    share_prefix: bool = True,
) -> list[list[int]]:
    """New token ids of the best hypothesis of each row (up to and including EOS)."""
    batch, k = ids.shape[0], num_beams
    eos = torch.tensor(eos_token_id, device=ids.device).reshape(-1)
    decoder = decoder_for(model, share_prefix, room=max_new_tokens)
    logits = decoder.prefill(ids.repeat_interleave(k, dim=0), mask.repeat_interleave(k, dim=0))
    running = torch.zeros(batch, k, device=ids.device)
    running[:, 1:] = NEG_INF  # the k copies of a prompt are one beam until the first step spreads them
    sequences = torch.zeros(batch, k, 0, dtype=torch.long, device=ids.device)
    finished = Hypotheses(batch, k, max_new_tokens, pad_token_id, ids.device)
    rank = torch.arange(2 * k, device=ids.device)
    for t in range(max_new_tokens):
        logp = torch.log_softmax(logits, dim=-1).view(batch, k, -1) + running[..., None]
        vocab = logp.shape[-1]
        top, flat = logp.view(batch, -1).topk(2 * k, dim=1)
        parent, token = flat // vocab, flat % vocab
        candidates = torch.cat([sequences.gather(1, parent[..., None].expand(-1, -1, t)), token[..., None]], dim=2)
        ends = torch.isin(token, eos) | (t == max_new_tokens - 1)
        normalised = top / float(t + 1) ** length_penalty
        finished.add(torch.where(ends & (rank < k), normalised, NEG_INF), candidates)
        keep = torch.where(ends, NEG_INF, top).topk(k, dim=1).indices
        running = top.gather(1, keep)
        sequences = candidates.gather(1, keep[..., None].expand(-1, -1, t + 1))
        finished.close_where_beaten(running[:, 0] / float(t + 1) ** length_penalty)
        if t == max_new_tokens - 1 or not finished.open.any():
            break
        rows = (parent.gather(1, keep) + torch.arange(batch, device=ids.device)[:, None] * k).reshape(-1)
        decoder.select(rows)
        logits = decoder.step(token.gather(1, keep).reshape(-1))
    return _until_eos(finished.tokens[:, 0], eos)
