"""Analytical FLOPs of one training step, for the fine-tuning method actually applied.

The accounting (matmuls only: norms, softmax and other elementwise ops are ignored, as
``torch.utils.flop_counter.FlopCounterMode`` ignores them):

- A matmul (m x k) @ (k x n) costs 2mkn. A Linear of ``in x out`` weights seeing ``rows`` tokens
  costs 2 * rows * in * out forward: the "2N per token" of Kaplan et al. (2020, "Scaling Laws for
  Neural Language Models", arXiv:2001.08361, section 2.1), counted per layer.
- Its backward is two matmuls of the same size: the gradient w.r.t. the input (only when the input
  requires grad) and w.r.t. the weight (only when the weight trains). Full fine-tuning pays both,
  hence Kaplan's 6N per token; a frozen layer behind a trainable one pays 4N; a frozen layer with
  nothing trainable before it (and its inputs) pays 2N, the forward alone.
- Attention adds 2 * q * k * d for the scores Q K^T and again for A V per layer, with q queries,
  k keys and d = heads * head_dim (Hoffmann et al., 2022, "Training Compute-Optimal Large Language
  Models", arXiv:2203.15556, appendix F; masked positions are computed too). Backward: dQ, dK, dA
  and dV, each the size of its forward matmul, each only when its operand requires grad.
- These are "model FLOPs" in the sense of Chowdhery et al. (2022, PaLM, appendix B), with one
  exception: work a fused attention kernel redoes in its backward (flash attention recomputes the
  scores) is not counted, but activation checkpointing (train.gradient_checkpointing) is, because
  it is a choice of the run that makes its steps dearer: backward reruns the forward of every
  checkpointed layer (transformers' GradientCheckpointingLayer with checkpointing on: the
  transformer blocks). The embeddings, the output head and prefix tuning's reparameterization run
  outside them and are not recomputed. An approximation, on the high side: torch stops a layer's
  recomputation as soon as every tensor its backward needs is back, so the layer's last matmul may
  not rerun (0-5% of a step on the test models, tests/test_flops_checkpointing.py).

How each method enters (found by structure, not by a table of methods):
- frozen weights (every peft method, parallel adapters, last_layers below the top) get no weight
  gradient; a layer gets no input gradient until something trainable lies upstream of it;
- the adapters' down/up projections are Linear layers like any other, so their matmuls are counted
  where they run and with the tokens they see; a peft tuner layer (LoRA's A/B, LoHa, VeRA, OFT ...)
  is measured whole once per distinct layer (flops_tuners.py) and counted with the tokens it sees;
- prompt tuning prepends virtual tokens: every layer behind them sees more rows;
- prefix tuning prepends num_virtual_tokens keys/values (read from the peft config) to each
  self-attention of the decoder stack (on T5 only there: see methods/prefix_tuning.py), so keys grow
  and queries do not; its reparameterization MLP runs on num_virtual_tokens rows per example.

Which layers exist, how many tokens each sees and whether its input requires grad is learned once
in ``__init__``: two forward passes (three for encoder-decoder models) of a 1 x ~6-token probe,
with forward hooks on every Linear / Conv1D and attention projection, in eval mode and without a
backward; the hooks are removed after, so the model is left exactly as it was. Token counts per layer
are affine in the batch's lengths (c + e*S + d*T per example, S = input length, T = decoder length),
so the count of a step is a quadratic in (S, T) times the batch size, whose six coefficients are
summed up front: ``__call__`` is a handful of multiplications on the padded shapes, and never
touches the model. A decoder-only model's output head runs only at the positions that have a label
(Causal.loss_sum in models/causal.py), so its cost is counted per labelled token, read from the batch's labels. Limits:
fused qkv projections (GPT-2's c_attn) are not recognised as attention. A peft tuner layer (LoRA's,
LoHa's with its delta weight, BOFT's rotation, DoRA's weight norm) is measured whole, once per
distinct layer, with FlopCounterMode (flops_tuners.py) and counted per token and per call.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.pytorch_utils import Conv1D

from peftlab.measure.flops_tuners import Measured, tuner_layers
from peftlab.models import arch
from peftlab.models.kind import ModelKind, kind_of

MATMUL_LAYERS = (nn.Linear, Conv1D)  # GPT-2-style models use Conv1D as a transposed Linear
# Attention modules are the ones with query/key/value children (models/arch.py).
QKV_NAMES = arch.QKV
PROBE_S, PROBE_T = 6, 4  # probe lengths; any small distinct values work

Affine = tuple[int, int, int]  # tokens per example = c + e*S + d*T
Call = tuple[Affine, int, int, bool, bool]  # tokens, in width, out width, input requires grad, output requires grad


def _product(a: Affine, b: Affine = (1, 0, 0)) -> list[int]:
    """a * b as coefficients of the monomials (1, S, T, S*S, S*T, T*T)."""
    (c1, e1, d1), (c2, e2, d2) = a, b
    return [c1 * c2, c1 * e2 + e1 * c2, c1 * d2 + d1 * c2, e1 * e2, e1 * d2 + d1 * e2, d1 * d2]


def _add(acc: list[int], poly: list[int], factor: int) -> None:
    for i, v in enumerate(poly):
        acc[i] += factor * v


def _attention_projections(model: nn.Module) -> list[tuple[nn.Module, nn.Module, nn.Module]]:
    """(q, k, v) children of every attention module (peft wrappers included: the wrapper's output,
    LoRA or IA3 applied, is what attention multiplies)."""
    found = []
    for module in model.modules():
        children = dict(module.named_children())
        for names in QKV_NAMES:
            if all(n in children for n in names):
                found.append(tuple(children[n] for n in names))
    return found


def _prefix(model: nn.Module) -> tuple[int, bool]:
    """(prefix length, whether it trains) of a peft prefix-tuned model; (0, False) otherwise."""
    config = getattr(model, "active_peft_config", None)
    if getattr(getattr(config, "peft_type", None), "value", None) != "PREFIX_TUNING":
        return 0, False
    trains = any(p.requires_grad for n, p in model.named_parameters() if "prompt_encoder" in n)
    return config.num_virtual_tokens, trains


def _outside(linears: list[nn.Module], tuners: list[nn.Module]) -> list[nn.Module]:
    """The Linear layers not inside a peft tuner layer: a tuner layer is counted whole (flops_tuners.py)."""
    inside = {m for layer in tuners for m in layer.modules() if m is not layer}
    return [m for m in linears if m not in inside]


def _recomputed(model: nn.Module) -> set[nn.Module]:
    """The modules inside layers whose forward backward reruns (activation checkpointing on)."""
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    return {inner for layer in layers for inner in layer.modules()}


def _probe(model: nn.Module, modules: list[nn.Module], batch: dict[str, torch.Tensor]) -> dict[nn.Module, list]:
    """Run ``batch`` and record every call of ``modules``:
    (tokens, in width, out width, input requires grad, output requires grad)."""
    calls: dict[nn.Module, list] = {m: [] for m in modules}

    def record(module, args, out):
        x = args[0]
        calls[module].append((x.numel() // x.shape[-1], x.shape[-1], out.shape[-1], x.requires_grad, out.requires_grad))

    handles = [m.register_forward_hook(record) for m in modules]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()  # no dropout: the probe draws no random numbers, so training stays reproducible
        with torch.enable_grad():  # requires_grad must propagate to be read
            model(**batch)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return calls


def _affine_calls(model: nn.Module, modules: list[nn.Module], kind: ModelKind):
    """calls(module) -> [Call]: each call's tokens as c + e*S + d*T per example, from probes of the
    input length S and the decoder length T, each grown by one."""
    device = next(model.parameters()).device
    shapes = ((PROBE_S, PROBE_T), (PROBE_S + 1, PROBE_T), (PROBE_S, PROBE_T + 1))
    batches = [kind.probe_batch(s, t, device) for s, t in shapes]
    t0 = kind.decoder_length(batches[0])
    base, longer_s = _probe(model, modules, batches[0]), _probe(model, modules, batches[1])
    # A kind with no decoder length (one sequence) gets the same probe for T + 1: no need to run it.
    longer_t = _probe(model, modules, batches[2]) if kind.decoder_length(batches[2]) != t0 else base

    def calls(module: nn.Module) -> list[Call]:
        out = []
        for (r0, i, o, in_hot, out_hot), (rs, *_), (rt, *_) in zip(
            base[module], longer_s[module], longer_t[module], strict=True
        ):
            e, d = rs - r0, rt - r0  # tokens grow by e per input token, by d per decoder token
            out.append(((r0 - e * PROBE_S - d * t0, e, d), i, o, in_hot, out_hot))
        return out

    return calls


def _resolve_kind(model: nn.Module, kind: ModelKind | bool | None) -> ModelKind:
    """The model's kind. ``kind`` may be given as the strategy, or as the former ``is_encoder_decoder``
    flag, which the model's own kind must then match (a wrong flag would miscount silently)."""
    resolved = kind if isinstance(kind, ModelKind) else kind_of(model)
    if isinstance(kind, bool) and kind != resolved.encoder_decoder:
        raise ValueError(f"StepFlops: is_encoder_decoder={kind}, but the model is {type(resolved).__name__}")
    return resolved


class StepFlops:
    """FLOPs of one micro-batch ``Backbone.kind.loss_sum(model, ...)`` forward + backward, on padded shapes.

    Build it once, after the method was applied (requires_grad flags set) and before the timed
    loop; calling it is arithmetic on ``batch["input_ids"].shape`` and the kind's ``decoder_length``
    (for encoder-decoder models ``batch["labels"].shape[1]`` or ``decoder_input_ids``). ``kind``: the
    model's (``Backbone.kind``); left out, it is read from the model (``kind_of``).
    """

    def __init__(self, model: nn.Module, kind: ModelKind | bool | None = None):
        self.kind = _resolve_kind(model, kind)
        linears = [m for m in model.modules() if isinstance(m, MATMUL_LAYERS)]
        attentions = _attention_projections(model)
        tuners = tuner_layers(model)
        linears = _outside(linears, tuners)
        hooked = list(dict.fromkeys(linears + [m for qkv in attentions for m in qkv] + tuners))
        calls = _affine_calls(model, hooked, self.kind)

        self._fwd, self._bwd = [0] * 6, [0] * 6
        # Activation checkpointing: backward reruns the forward of the checkpointed layers, counted
        # in backward when anything trains (an over-estimate by at most one matmul per layer).
        recomputed = _recomputed(model) if any(p.requires_grad for p in model.parameters()) else set()
        # (forward, backward) FLOPs per row of a head the loss runs on labelled rows only (decoder-only).
        self._head: tuple[int, int] | None = None
        head = self.kind.labelled_rows_head(model)
        for m in linears:
            for tokens, i, o, in_hot, _ in calls(m):
                size = 2 * i * o
                if m is head:
                    self._head = (size, size * (int(m.weight.requires_grad) + int(in_hot)))
                    continue
                _add(self._fwd, _product(tokens), size)
                # Backward: grad w.r.t. the weight if it trains, w.r.t. the input if that requires grad,
                # and the forward once more where checkpointing reruns it.
                grads = int(m.weight.requires_grad) + int(in_hot) + int(m in recomputed)
                _add(self._bwd, _product(tokens), size * grads)

        self._per_call = [0, 0]  # (forward, backward) FLOPs per micro-batch, whatever its shape
        self._count_tuners(tuners, calls, recomputed)

        prefix, prefix_trains = _prefix(model)
        for q, k, v in attentions:
            for (q_tok, _, width, _, q_hot), (k_tok, *_, k_hot), (*_, v_hot) in zip(calls(q), calls(k), calls(v)):
                if prefix and q_tok == k_tok and self.kind.prefix_reaches(q_tok):
                    # A self-attention the prefix reaches (the decoder stack's): peft's prefix keys/values
                    # sit before the keys of the real tokens. Encoder and cross-attention do not get it.
                    k_tok = (k_tok[0] + prefix, k_tok[1], k_tok[2])
                    k_hot, v_hot = k_hot or prefix_trains, v_hot or prefix_trains
                matmul = _product(q_tok, k_tok)  # q x k pairs; each of QK^T and AV costs 2 * width per pair
                _add(self._fwd, matmul, 2 * 2 * width)
                if q in recomputed:
                    _add(self._bwd, matmul, 2 * 2 * width)
                # QK^T backward: dQ if Q requires grad, dK if K does. AV backward: dA if the scores
                # (from Q or K) require grad, dV if V does.
                scores_hot = q_hot or k_hot
                _add(self._bwd, matmul, 2 * width * (int(q_hot) + int(k_hot) + int(scores_hot) + int(v_hot)))

    def _count_tuners(self, tuners: list[nn.Module], calls, recomputed: set[nn.Module]) -> None:
        """peft tuner layers (LoRA's, LoHa's delta weight, BOFT's rotation ...): measured once per
        distinct layer (flops_tuners.py), per row and per call; ``calls(layer)`` as in ``__init__``."""
        extra = Measured()
        for layer in tuners:
            for tokens, _, _, in_hot, _ in calls(layer):
                e = extra(layer, in_hot)
                rerun = int(layer in recomputed)  # checkpointing reruns its forward in backward
                _add(self._fwd, _product(tokens), e.row_forward)
                _add(self._bwd, _product(tokens), e.row_backward + rerun * e.row_forward)
                self._per_call[0] += e.call_forward
                self._per_call[1] += e.call_backward + rerun * e.call_forward

    def _lengths(self, batch: dict[str, torch.Tensor]) -> tuple[int, int, int]:
        batch_size, s = batch["input_ids"].shape
        return batch_size, s, self.kind.decoder_length(batch)

    @staticmethod
    def _evaluate(coefficients: list[int], b: int, s: int, t: int) -> int:
        c, cs, ct, css, cst, ctt = coefficients
        return b * (c + cs * s + ct * t + css * s * s + cst * s * t + ctt * t * t)

    def _count(self, batch: dict[str, torch.Tensor], forward: bool, backward: bool) -> int:
        b, s, t = self._lengths(batch)
        total = 0
        if forward:
            total += self._evaluate(self._fwd, b, s, t)
        if backward:
            total += self._evaluate(self._bwd, b, s, t)
        total += forward * self._per_call[0] + backward * self._per_call[1]
        if self._head:  # a head that sees the labelled positions only (decoder-only models)
            total += (forward * self._head[0] + backward * self._head[1]) * self.kind.labelled_tokens(batch)
        return total

    def forward(self, batch: dict[str, torch.Tensor]) -> int:
        """FLOPs of the forward pass alone (e.g. zero-shot scoring of the same batch)."""
        return self._count(batch, True, False)

    def backward(self, batch: dict[str, torch.Tensor]) -> int:
        """FLOPs of ``loss.backward()`` alone (0 when nothing trains)."""
        return self._count(batch, False, True)

    def __call__(self, batch: dict[str, torch.Tensor]) -> int:
        return self._count(batch, True, True)
