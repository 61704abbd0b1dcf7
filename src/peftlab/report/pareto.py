"""The Pareto frontier of (cost, quality) points: what the plots draw and the verdict reads."""

from __future__ import annotations

import math


def pareto_front(costs: list[float], goods: list[float]) -> list[int]:
    """Indices on the frontier, cheapest first: strictly better than every cheaper-or-equal point.
    ``goods`` are oriented so that larger is better."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -goods[i]))
    front, best = [], -math.inf
    for i in order:
        if goods[i] > best:
            front.append(i)
            best = goods[i]
    return front
