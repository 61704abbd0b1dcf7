"""Integrated gradients (Sundararajan, Taly & Yan, 2017. Axiomatic Attribution for Deep Networks.
ICML 2017, arXiv:1703.01365), for any differentiable f of one tensor.

    IG_i(x) = (x_i - b_i) * integral_0^1 df/dx_i (b + a (x - b)) da

The integral runs along the straight path from the baseline b to the input x and is approximated
by a quadrature rule. Completeness (the paper's Proposition 1): the attributions sum to
f(x) - f(b); what the quadrature leaves over is reported as the completeness gap (the paper's
section 4 check that enough steps were taken).

Captum (the usual implementation) is not installed here and is not a peftlab dependency. IG itself
is a weighted sum of gradients at a few points on a line, about forty lines below; what the
language-model side needs (where the embeddings enter, which tokens are on the path, virtual
tokens included) Captum would not supply either, so a small implementation suffices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

RULES = ("gauss-legendre", "trapezoid")


MAX_STEPS = 1024  # Gauss-Legendre's nodes come from an n x n eigenproblem: 10**5 points would need 80 GB


def path_nodes(steps: int, rule: str = "gauss-legendre") -> tuple[np.ndarray, np.ndarray]:
    """(alphas in [0, 1], weights summing to 1) of the quadrature rule with ``steps`` points.

    gauss-legendre: exact for polynomials of degree 2*steps - 1, and denser near both ends, where
    the path function of a transformer changes fastest (RMSNorm/LayerNorm rescale a nearly-zero
    input sharply); Captum's default. trapezoid: steps intervals, steps + 1 evenly spaced points
    (the paper's Riemann sum, with halved end weights).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if rule == "gauss-legendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return (x + 1) / 2, w / 2
    if rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
        return alphas, weights
    raise ValueError(f"unknown quadrature rule {rule!r}; choose from {', '.join(RULES)}")


@dataclass
class IGResult:
    attributions: torch.Tensor  # same shape as x
    f_input: float
    f_baseline: float

    @property
    def total(self) -> float:
        return float(self.attributions.double().sum())

    @property
    def gap(self) -> float:
        """|sum of attributions - (f(x) - f(b))|: zero for exact integration (completeness)."""
        return abs(self.total - (self.f_input - self.f_baseline))

    @property
    def relative_gap(self) -> float:
        return self.gap / max(abs(self.f_input - self.f_baseline), 1e-12)


def integrated_gradients(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    baseline: torch.Tensor,
    steps: int = 32,
    rule: str = "gauss-legendre",
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> IGResult:
    """IG of ``f`` at ``x``. ``f`` maps a batch (k, *x.shape) to k scores; path points are evaluated
    ``batch_size`` at a time (one forward and one backward pass per batch)."""
    alphas, weights = path_nodes(steps, rule)
    x, baseline = x.detach().float(), baseline.detach().float()
    diff = x - baseline
    grad_sum = torch.zeros_like(x, dtype=torch.float64)
    shape = (-1,) + (1,) * x.dim()
    for start in range(0, len(alphas), batch_size):
        a = torch.tensor(alphas[start : start + batch_size], dtype=x.dtype, device=x.device).view(shape)
        w = torch.tensor(weights[start : start + batch_size], dtype=torch.float64, device=x.device).view(shape)
        z = (baseline + a * diff).requires_grad_(True)
        # autograd.grad asks only for d f / d z: no parameter gradients are computed or stored.
        (g,) = torch.autograd.grad(f(z).sum(), z)
        grad_sum += (w * g.double()).sum(0)
        if progress is not None:
            progress(len(a))
    with torch.no_grad():
        ends = f(torch.stack([x, baseline])).double()
    return IGResult((diff.double() * grad_sum).float(), float(ends[0]), float(ends[1]))
