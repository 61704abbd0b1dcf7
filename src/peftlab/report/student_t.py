"""Student's t tail and quantile (peftlab depends on no statistics library; numpy has neither).

Used by top_group.py to widen a bootstrap critical value where the noise of a difference is
measured from few degrees of freedom (3 seeds, or a small test set): a bootstrap does not see the
uncertainty of its own standard error, and at the far tail a family of 16 labels needs, that
matters (t with 4 degrees of freedom at the normal's 3.4 is 9.7). The regularised incomplete beta
function is evaluated by its continued fraction (Lentz's method; Press et al., Numerical Recipes,
3rd ed., §6.4).
"""

from __future__ import annotations

import math


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, f = 1e-300, 1.0
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return f


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (t >= 0)."""
    return 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def normal_upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def t_matching_normal(z: float, df: float) -> float:
    """The t value with the same upper tail as the standard normal's ``z`` (bisection)."""
    if not math.isfinite(df) or df > 1e6:
        return z
    tail = normal_upper_tail(z)
    lo, hi = z, max(z, 1.0)
    while t_upper_tail(hi, df) > tail:
        hi *= 2.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_upper_tail(mid, df) > tail else (lo, mid)
    return (lo + hi) / 2.0
