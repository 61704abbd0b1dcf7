"""Does the top-group rule hold? A simulation of k truly equal methods, and of true gaps.

    .venv/bin/python bench/tie_rule.py                       # fit the records, run every setting
    .venv/bin/python bench/tie_rule.py --sims 200 --quick    # a smoke run (2 settings)
    .venv/bin/python bench/tie_rule.py --records runs/X      # fit another comparison's run folders

The rule under test is peftlab's own (report/top_group.py, via report/aggregate.mark_ties'
pieces), run on simulated per-example scores. The simulated world is fitted to the per-example
records of a real comparison (bench/data/sql_demo_records.json: sql_demo on SmolLM2-135M, three
methods x three seeds, 64 test questions, each scored 0 or 1):

    P(method m, seed s gets example i right) = sigmoid(mu + a_i + c_mi + b_ms)

a_i ~ N(0, sd_a): the example's difficulty, shared by every method (what makes paired intervals
narrow); c_mi ~ N(0, sd_c): the method's own per-example strengths, shared by its seeds; b_ms ~
N(0, sd_b): the seed's shift of the whole run (training noise). The four numbers are fitted by
matching, on the records, the mean accuracy, the correlation of two methods' per-example
correctness, that of two seeds of one method, and the seed-to-seed sd of a run's accuracy.

Measured, per setting (k methods, S seeds, n test examples):
- family-wise error: k equal methods; the share of simulated comparisons in which ANY label is put
  outside the top group (target: at most 5% where the rule claims to cover the noise: 3 seeds; with
  one seed the intervals cover test sampling only, which the leaderboard says out loud: that row
  is also measured with the seed noise switched off, the world the one-seed claim is about);
- power: one of the k methods behind the others by a true gap (0.05, 0.10 in accuracy); the share
  of comparisons in which it is put outside the top group;
- sample-size advice: predicted power (report/sample_size.py's formula, components estimated from
  a simulated pilot) against the simulated power at the same seeds and examples.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from peftlab.report import sample_size
from peftlab.report.ties import LabelSample, mean_of_scores
from peftlab.report.top_group import top_group

HERE = Path(__file__).parent
RECORDS = HERE / "data" / "sql_demo_records.json"


# ---- the records ------------------------------------------------------------------------------


def read_run_folders(folder: Path) -> dict[str, list[list[float]]]:
    """label -> per-seed lists of per-example scores, read from a comparison folder's runs."""
    from peftlab.report.runs import load_runs

    out: dict[str, list[tuple]] = {}
    for run in load_runs(folder):
        scores = run.example_scores()
        ids = sorted(scores)
        out.setdefault(run.label, []).append((run.seed, [scores[i] for i in ids]))
    return {label: [s for _, s in sorted(runs)] for label, runs in sorted(out.items())}


def statistics_of(records: dict[str, list[list[float]]]) -> dict[str, float]:
    """The four numbers the world is fitted to."""
    runs = {label: np.array(seeds, dtype=float) for label, seeds in records.items() if len(seeds) >= 2}
    means = [x.mean() for x in runs.values()]
    within, between, seed_sd = [], [], []
    labels = list(runs)
    for label in labels:
        x = runs[label]
        within += [_corr(x[a], x[b]) for a in range(len(x)) for b in range(a + 1, len(x))]
        seed_sd.append(x.mean(axis=1).std(ddof=1))
    for p in range(len(labels)):
        for q in range(p + 1, len(labels)):
            between += [_corr(a, b) for a in runs[labels[p]] for b in runs[labels[q]]]
    return {
        "accuracy": float(np.mean(means)),
        "corr_between_methods": float(np.nanmean(between)),
        "corr_between_seeds": float(np.nanmean(within)),
        "seed_sd": float(np.sqrt(np.mean(np.square(seed_sd)))),
    }


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


# ---- the simulated world ----------------------------------------------------------------------


def simulate(rng, world: dict, k: int, seeds: int, n: int, shifts: np.ndarray | None = None) -> np.ndarray:
    """(k, seeds, n) scores in {0, 1}; shifts: per-method logit offsets (a true gap), default none."""
    a = rng.normal(0, world["sd_a"], size=n)
    c = rng.normal(0, world["sd_c"], size=(k, 1, n))
    b = rng.normal(0, world["sd_b"], size=(k, seeds, 1))
    shift = np.zeros((k, 1, 1)) if shifts is None else shifts.reshape(k, 1, 1)
    logit = world["mu"] + a + c + b + shift
    return (rng.random((k, seeds, n)) < 1 / (1 + np.exp(-logit))).astype(float)


def fit(target: dict[str, float], rng_seed: int = 0) -> dict[str, float]:
    """mu, sd_a, sd_c, sd_b matching the records' four statistics (grid search over simulated worlds)."""
    rng = np.random.default_rng(rng_seed)
    best, best_loss = None, math.inf
    # 12 methods x 3 seeds per candidate: the seed sd of 3 seeds of one world would be too rough to fit.
    for sd_a in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        for sd_c in (0.0, 0.25, 0.5, 1.0, 1.5):
            for sd_b in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
                world = {"sd_a": sd_a, "sd_c": sd_c, "sd_b": sd_b}
                world["mu"] = mu_for(world, target["accuracy"], rng)
                got = statistics_of(_as_records(simulate(rng, world, 12, 3, 64 * 10)))
                loss = sum(
                    ((got[key] - target[key]) / scale) ** 2 for key, scale in SCALES.items() if np.isfinite(target[key])
                )
                if loss < best_loss:
                    best, best_loss = world, loss
    return best


SCALES = {"corr_between_methods": 0.05, "corr_between_seeds": 0.05, "seed_sd": 0.01}


def _as_records(scores: np.ndarray) -> dict[str, list[list[float]]]:
    return {f"m{m}": scores[m].tolist() for m in range(scores.shape[0])}


def mu_for(world: dict, accuracy: float, rng, samples: int = 200_000) -> float:
    """The logit mean giving this expected accuracy (bisection over a fixed Monte Carlo sample)."""
    spread = np.sqrt(world["sd_a"] ** 2 + world["sd_c"] ** 2 + world["sd_b"] ** 2)
    z = rng.normal(0, spread, size=samples)
    lo, hi = -10.0, 10.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(mid + z)))) < accuracy else (lo, mid)
    return (lo + hi) / 2


def shift_for_gap(world: dict, gap: float, rng) -> float:
    """The logit offset that lowers a method's expected accuracy by ``gap``."""
    target = expected_accuracy(world, world["mu"], rng) - gap
    return mu_for(world, target, rng) - world["mu"]


def expected_accuracy(world: dict, mu: float, rng, samples: int = 200_000) -> float:
    spread = np.sqrt(world["sd_a"] ** 2 + world["sd_c"] ** 2 + world["sd_b"] ** 2)
    return float(np.mean(1 / (1 + np.exp(-(mu + rng.normal(0, spread, size=samples))))))


# ---- the rule on simulated comparisons --------------------------------------------------------


def verdicts(scores: np.ndarray, resamples: int) -> list:
    """peftlab's verdicts for (k, seeds, n) scores, labels ranked by mean as the leaderboard ranks them."""
    k, seeds, n = scores.shape
    order = np.argsort(-scores.mean(axis=(1, 2)), kind="stable")
    ids = [f"t{i}" for i in range(n)]
    samples = [LabelSample(ids, np.stack([scores[m], np.ones((seeds, n))], axis=-1), mean_of_scores) for m in order]
    means = [float(scores[m].mean()) for m in order]
    found, family = top_group([f"m{m}" for m in order], means, samples, True, [seeds] * k, resamples)
    return [(int(m), v) for m, v in zip(order, found)], family


def rates(world, k, seeds, n, sims, resamples, rng, gap: float = 0.0) -> dict[str, float]:
    """Null (gap 0): share of comparisons with any label outside the top group. Gap: share in which the
    method behind by ``gap`` (method 0) is put outside it."""
    shifts = np.zeros(k)
    if gap:
        shifts[0] = shift_for_gap(world, gap, rng)
    hits = 0
    for _ in range(sims):
        found, _ = verdicts(simulate(rng, world, k, seeds, n, shifts), resamples)
        if gap:
            hits += any(m == 0 and not v.in_top_group for m, v in found)
        else:
            hits += any(not v.in_top_group for _, v in found)
    return {"rate": hits / sims, "se": math.sqrt(max(hits, 1) * (sims - hits) / sims) / sims}


def advice_check(world, k, seeds, n, gap, sims, resamples, rng) -> dict[str, float]:
    """The advice's power formula against simulation, for the pair it speaks of: one method ahead of the
    k - 1 others (equal among themselves) by ``gap``; the share of those rows put outside the top group,
    and report/sample_size.power for the same seeds and examples, its variance components estimated
    on a large simulated pilot (16 labels x 5 seeds, 2000 examples) and its c from the simulated
    comparisons (median)."""
    shift = shift_for_gap(world, gap, rng)
    # 16 labels x 5 seeds: the seed variance, pooled, rests on 64 degrees of freedom, not 8.
    pilot = simulate(rng, world, 16, 5, 2000, np.array([0.0] + [shift] * 15))
    ids = [f"t{i}" for i in range(pilot.shape[2])]
    pilots = [LabelSample(ids, np.stack([x, np.ones(x.shape)], axis=-1), mean_of_scores) for x in pilot]
    pooled = sample_size.pooled_seed_variances(pilots)
    comp = sample_size.components(pilots[0], pilots[1], (True, True), pooled, labels=k)
    shifts = np.array([0.0] + [shift] * (k - 1))
    found_rows, critical = 0, []
    for _ in range(sims):
        found, family = verdicts(simulate(rng, world, k, seeds, n, shifts), resamples)
        critical.append(family.critical)
        found_rows += sum(m != 0 and not v.in_top_group for m, v in found)
    c = float(np.median(critical))
    return {
        "predicted": sample_size.power(comp, gap, c, seeds, n),
        "simulated": found_rows / (sims * (k - 1)),
        "critical": c,
        "advised_seeds": sample_size.seeds_needed(comp, gap, c, n),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=Path, default=RECORDS, help="records JSON, or a comparison folder to read")
    p.add_argument("--sims", type=int, default=400, help="simulated comparisons per setting")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per comparison")
    p.add_argument("--quick", action="store_true", help="two settings only (a smoke run)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--only", choices=("null", "power", "advice"), default=None, help="run one part only")
    args = p.parse_args()
    records = (
        read_run_folders(args.records) if args.records.is_dir() else json.loads(args.records.read_text())["scores"]
    )
    rng = np.random.default_rng(0)
    target = statistics_of(records)
    world = fit(target)
    fitted = statistics_of(_as_records(simulate(rng, world, 12, 3, 64 * 10)))
    print(f"records: {json.dumps(target)}\nfitted world: {json.dumps(world)}\nits statistics: {json.dumps(fitted)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", flush=True)
    results = {"records": target, "world": world, "fitted": fitted, "null": [], "power": [], "advice": []}
    ks, seed_list, ns = ((2, 16), (1, 3), (64,)) if args.quick else ((2, 8, 16), (1, 3), (64, 400))
    quiet = {**world, "sd_b": 0.0}
    parts = {args.only} if args.only else {"null", "power", "advice"}
    for k in ks if "null" in parts else ():
        for seeds in seed_list:
            for n in ns:
                t0 = time.perf_counter()
                row = {"k": k, "seeds": seeds, "n": n, **rates(world, k, seeds, n, args.sims, args.resamples, rng)}
                if seeds == 1:
                    row["rate_without_seed_noise"] = rates(quiet, k, 1, n, args.sims, args.resamples, rng)["rate"]
                row["seconds"] = time.perf_counter() - t0
                results["null"].append(row)
                print("null", json.dumps(row), flush=True)
    for k in ks if "power" in parts else ():
        for seeds in seed_list:
            for n in ns:
                for gap in (0.05, 0.10):
                    sims = max(100, args.sims // 2)
                    row = {"k": k, "seeds": seeds, "n": n, "gap": gap}
                    row.update(rates(world, k, seeds, n, sims, args.resamples, rng, gap))
                    results["power"].append(row)
                    print("power", json.dumps(row), flush=True)
    checks = ((2, 3, 400, 0.05), (2, 5, 400, 0.05), (8, 3, 64, 0.10), (8, 3, 400, 0.05), (8, 6, 400, 0.05))
    for k, seeds, n, gap in checks if "advice" in parts else ():
        row = {"k": k, "seeds": seeds, "n": n, "gap": gap}
        row.update(advice_check(world, k, seeds, n, gap, max(100, args.sims // 2), args.resamples, rng))
        results["advice"].append(row)
        print("advice", json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
