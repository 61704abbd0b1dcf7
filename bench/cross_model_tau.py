"""Does the cross-model interval of Kendall's tau hold? A simulation of two models with known orders.

    .venv/bin/python bench/cross_model_tau.py                    # every scenario, 400 comparisons each
    .venv/bin/python bench/cross_model_tau.py --sims 100 --quick # a smoke run

The rule under test is peftlab's own (report/cross_model.py: each model's simultaneous intervals of
report/top_group.py at level 1 - 0.05/2, the range of tau over the orders they leave open), run on
simulated per-example scores. The world is bench/tie_rule.py's, fitted to a real comparison's records
(sql_demo on SmolLM2-135M): P(right) = sigmoid(mu + a_i + c_mi + b_ms + shift_m), the shift being
each label's true offset on that model. The true tau is that of the shifts (the expected accuracy
is increasing in the shift; equal shifts are a tie, counting 0).

Measured per scenario (k labels, S seeds, n test examples): coverage, the share of simulated
comparisons whose interval holds the true tau (target: at least 95%), the interval's mean width, and
the same two for a percentile bootstrap of tau (test examples and seeds resampled, tau of the
resampled means; what one would write first), to show why peftlab does not use it. With one seed
the intervals cover test sampling only, so that row is simulated with the seed noise switched off,
the world its claim is about (as bench/tie_rule.py does).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from tie_rule import RECORDS, fit, simulate, statistics_of  # noqa: E402 (bench/ is not a package)

from peftlab.report.cross_model import agreement  # noqa: E402
from peftlab.report.ties import LabelSample, mean_of_scores  # noqa: E402
from peftlab.report.top_group import top_group  # noqa: E402

LEVEL = 1 - 0.05 / 2  # each of the two models' families, as cross_model.across runs them


def tau_a(x: np.ndarray, y: np.ndarray) -> float:
    pairs = list(itertools.combinations(range(len(x)), 2))
    return sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in pairs) / len(pairs)


def family(scores: np.ndarray, resamples: int):
    """(means by label, the Family at LEVEL) for one model's (k, S, n) scores."""
    k, seeds, n = scores.shape
    means = scores.mean(axis=(1, 2))
    order = np.argsort(-means, kind="stable")
    ids = [f"t{i}" for i in range(n)]
    samples = [LabelSample(ids, np.stack([scores[m], np.ones((seeds, n))], axis=-1), mean_of_scores) for m in order]
    labels = [f"m{m}" for m in order]
    _, fam = top_group(labels, [float(means[m]) for m in order], samples, True, [seeds] * k, resamples, level=LEVEL)
    return means, fam


def bootstrap_tau(a: np.ndarray, b: np.ndarray, rng, resamples: int) -> tuple[float, float]:
    """Percentile interval of tau: test examples drawn once per resample for both models, seeds per label."""
    k, seeds, n = a.shape
    taus = []
    for _ in range(resamples):
        ex = rng.integers(0, n, n)
        pick = rng.integers(0, seeds, (k, seeds))
        ma = np.array([a[m][pick[m]][:, ex].mean() for m in range(k)])
        mb = np.array([b[m][pick[m]][:, ex].mean() for m in range(k)])
        taus.append(tau_a(ma, mb))
    return float(np.quantile(taus, 0.025)), float(np.quantile(taus, 0.975))


def scenario(world, shifts_a, shifts_b, seeds, n, sims, resamples, rng) -> dict:
    truth = tau_a(np.asarray(shifts_a), np.asarray(shifts_b))
    k = len(shifts_a)
    held = width = boot_held = boot_width = 0.0
    for _ in range(sims):
        a = simulate(rng, world, k, seeds, n, np.asarray(shifts_a, dtype=float))
        b = simulate(rng, world, k, seeds, n, np.asarray(shifts_b, dtype=float))
        (ma, fa), (mb, fb) = family(a, resamples), family(b, resamples)
        labels = [f"m{m}" for m in range(k)]
        means = {f"m{m}": {"a": float(ma[m]), "b": float(mb[m])} for m in range(k)}
        got = agreement("a", "b", labels, means, {"a": fa, "b": fb}, sign=1)
        held += got.low - 1e-12 <= truth <= got.high + 1e-12
        width += got.high - got.low
        lo, hi = bootstrap_tau(a, b, rng, resamples // 4)
        boot_held += lo - 1e-12 <= truth <= hi + 1e-12
        boot_width += hi - lo
    return {
        "true_tau": truth,
        "coverage": held / sims,
        "width": width / sims,
        "bootstrap_coverage": boot_held / sims,
        "bootstrap_width": boot_width / sims,
    }


# (name, label shifts on model a, on model b): logit offsets. In the fitted world (mu 4.5, example
# difficulty sd 4) a shift of -1.5 costs ~0.07 in accuracy, -0.3 about 0.015.
SCENARIOS = (
    ("same order, clear gaps", [0.0, -1.5, -3.0, -4.5], [0.0, -1.5, -3.0, -4.5]),
    ("one swap", [0.0, -1.5, -3.0, -4.5], [0.0, -3.0, -1.5, -4.5]),
    ("all equal", [0.0] * 4, [0.0] * 4),
    ("reversed, close", [0.0, -0.3, -0.6, -0.9], [-0.9, -0.6, -0.3, 0.0]),
    ("8 labels, pairs swapped", [-0.6 * i for i in range(8)], [-0.6 * i for i in (1, 0, 3, 2, 5, 4, 7, 6)]),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sims", type=int, default=400, help="simulated comparisons per scenario")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per family")
    p.add_argument("--quick", action="store_true", help="two scenarios, one setting (a smoke run)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument(
        "--settings", default=None, help="seeds x examples to run, e.g. 10x400,3x64 (default: 1x400,3x64,3x400,3x2000)"
    )
    args = p.parse_args()
    rng = np.random.default_rng(0)
    world = fit(statistics_of(json.loads(RECORDS.read_text())["scores"]))
    print(f"world: {json.dumps(world)}; machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    settings = ((3, 400),) if args.quick else ((1, 400), (3, 64), (3, 400), (3, 2000))
    if args.settings:
        settings = tuple(tuple(int(v) for v in s.split("x")) for s in args.settings.split(","))
    rows = []
    for (name, a, b), (seeds, n) in itertools.product(SCENARIOS[:2] if args.quick else SCENARIOS, settings):
        t0 = time.perf_counter()
        w = world if seeds > 1 else {**world, "sd_b": 0.0}
        row = {"scenario": name, "k": len(a), "seeds": seeds, "n": n}
        row.update(scenario(w, a, b, seeds, n, args.sims, args.resamples, rng))
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"world": world, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
