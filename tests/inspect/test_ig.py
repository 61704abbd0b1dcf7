"""The integrated-gradients core on functions whose attributions are known in closed form."""

import numpy as np
import pytest
import torch

from peftlab.inspect.ig import integrated_gradients, path_nodes


@pytest.mark.parametrize("rule", ["gauss-legendre", "trapezoid"])
def test_path_nodes_span_the_path_and_weights_sum_to_one(rule):
    alphas, weights = path_nodes(16, rule)
    assert np.all((alphas >= 0) & (alphas <= 1))
    assert weights.sum() == pytest.approx(1.0)
    assert len(alphas) == (16 if rule == "gauss-legendre" else 17)


def test_unknown_rule_and_bad_steps_are_refused():
    with pytest.raises(ValueError, match="unknown quadrature rule"):
        path_nodes(8, "simpson")
    with pytest.raises(ValueError, match="steps"):
        path_nodes(0)


def test_quadratic_attributions_are_exact():
    """f(z) = sum w_i z_i^2 from a zero baseline: IG_i = w_i x_i^2 (Gauss-Legendre integrates the
    linear path integrand exactly)."""
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    x = torch.tensor([[1.0, 2.0], [-3.0, 0.5]])
    ig = integrated_gradients(lambda z: (w * z**2).sum((1, 2)), x, torch.zeros_like(x), steps=4, batch_size=3)
    assert torch.allclose(ig.attributions, w * x**2, atol=1e-6)
    assert ig.gap < 1e-5


def test_completeness_of_a_nonlinear_function_with_a_nonzero_baseline():
    torch.manual_seed(0)
    x, b = torch.randn(5, 3), torch.randn(5, 3)

    def f(z):
        return torch.tanh(z).sum((1, 2)) + (z[:, 0] * z[:, 1]).sum(-1)

    ig = integrated_gradients(f, x, b, steps=32)
    assert ig.f_input == pytest.approx(float(f(x[None])[0]), abs=1e-5)
    assert ig.f_baseline == pytest.approx(float(f(b[None])[0]), abs=1e-5)
    assert ig.relative_gap < 1e-4
    # a token (row) whose input equals its baseline gets exactly zero (the paper's "dummy" axiom)
    x[2] = b[2]
    assert torch.all(integrated_gradients(f, x, b, steps=8).attributions[2] == 0)
