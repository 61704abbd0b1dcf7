"""Fake run folders with realistic contents (no training): what `peftlab train` writes, by hand.

``fake_run`` writes one run folder from explicit numbers (tests check hand-computed results);
``sql_comparison`` writes a realistic comparison of six labels on the built-in text-to-SQL task
(SmolLM2-135M sizes, 2 seeds for most labels, 1 seed for the hybrid and zero-shot).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import yaml

TOTAL_PARAMS = 134_515_008
XSS = "<script>alert(1)</script>"
INSTRUCTION = "Table employees(name, department, city, salary, hired). Write one SQLite query that answers: "
QUESTIONS = [
    ("What is the average salary in {c}?", "SELECT AVG(salary) FROM employees WHERE city = '{c}'"),
    ("How many people work in {d}?", "SELECT COUNT(*) FROM employees WHERE department = '{d}'"),
    (
        "List the names of employees hired after {y} in {c}.",
        "SELECT name FROM employees WHERE hired > {y} AND city = '{c}'",
    ),
    ("Who earns the most in {d}?", "SELECT name FROM employees WHERE department = '{d}' ORDER BY salary DESC LIMIT 1"),
]
CITIES = ["Dublin", "Toronto", "Lisbon", "Oslo", "Denver", "Austin", "Madrid", "Boston"]
DEPARTMENTS = ["Legal", "Sales", "Engineering", "Marketing", "Finance", "Support"]


def sql_test_set(n: int = 64) -> list[tuple[str, str, str]]:
    """(id, input, reference) rows, like sql_demo's held-out test questions."""
    rows = []
    for i in range(n):
        q, sql = QUESTIONS[i % len(QUESTIONS)]
        fill = {"c": CITIES[i % len(CITIES)], "d": DEPARTMENTS[i % len(DEPARTMENTS)], "y": 2015 + i % 7}
        rows.append((f"test-{i}", INSTRUCTION + q.format(**fill), sql.format(**fill)))
    return rows


def fake_run(
    root: Path,
    name: str,
    *,
    label: str | None,
    method: str,
    seed: int,
    example_scores: list[float] | None,
    score: float | None = None,
    trainable: int = 0,
    adapter_bytes: int = 18,
    flops_per_step: float | None = None,
    seconds_per_step: float = 2.5,
    peak_memory: int = 4_000_000_000,
    steps: int = 40,
    eval_every: int = 5,
    curve_end: float | None = None,
    predictions: list[str] | None = None,
    references: list[str] | None = None,
    n_test: int | None = None,
    task: str = "sql_demo",
    metric: str = "execution_accuracy",
    higher_is_better: bool = True,
    batch_size: int = 8,
) -> Path:
    """One finished run folder. ``score`` defaults to the mean of ``example_scores``;
    ``example_scores=None`` writes predictions.csv without the score column (older runs);
    ``label=None`` / ``flops_per_step=None`` leave those new fields out; ``references`` replaces the
    text-to-SQL test set's references (several joined with " ||| ")."""
    (d := root / name).mkdir(parents=True)
    tests = _test_rows(n_test or len(references or example_scores or []) or 64, references)
    score = score if score is not None else sum(example_scores) / len(example_scores)
    trains = method != "none"
    end = curve_end if curve_end is not None else score
    steps_run = steps if trains else 0
    lines = _curve(f"{name}-{seed}", steps_run, batch_size, seconds_per_step, flops_per_step, eval_every, metric, end)
    if lines:  # zero-shot runs have no metrics.jsonl
        (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines), encoding="utf-8")
    _write_predictions(d / "predictions.csv", tests, example_scores, predictions)
    summary = {
        "run": name,
        "method": method,
        "task": task,
        "model": "smollm2-135m",
        "seed": seed,
        "primary_metric": metric,
        "higher_is_better": higher_is_better,
        "test": {metric: score, "seconds": 8.1},
        "test_examples": len(tests),
        "best_validation": {metric: end} if trains else None,
        **_training(lines, steps if trains else None, seconds_per_step, batch_size, flops_per_step),
        **_parameters(trainable),
        "adapter_bytes": adapter_bytes,
        "peak_memory_bytes": peak_memory,
        **MACHINE,
        **({"label": label} if label is not None else {}),  # left out: an older run
    }
    (d / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    _write_config(d / "config.yaml", root, name, seed, method, task, batch_size, steps, eval_every)
    return d


def _test_rows(n: int, references: list[str] | None) -> list[tuple[str, str, str]]:
    """The text-to-SQL test set, or its ids and inputs with other references."""
    tests = sql_test_set(n)
    return tests if references is None else [(eid, inp, ref) for (eid, inp, _), ref in zip(tests, references)]


def _curve(
    rng_key: str,
    steps: int,
    batch_size: int,
    seconds_per_step: float,
    flops_per_step: float | None,
    eval_every: int,
    metric: str,
    end: float,
) -> list[dict]:
    """metrics.jsonl: a training line every step, a validation line every eval_every steps."""
    rng = random.Random(rng_key)
    lines, examples, tokens = [], 0, 0
    for step in range(1, steps + 1):
        examples += batch_size
        tokens += batch_size * rng.randint(58, 70)
        base = {"step": step, "examples": examples, "tokens": tokens, "seconds": round(step * seconds_per_step, 3)}
        if flops_per_step is not None:
            base["flops"] = step * flops_per_step
        lines.append({**base, "lr": 1e-3, "train_loss": 1.8 * 0.9**step})
        if step % eval_every == 0:
            progress = 1 - 0.85**step  # rises quickly, then flattens
            val = max(0.0, min(1.0, end * progress + rng.uniform(-0.02, 0.02)))
            lines.append({**base, "validation": {metric: val}})
    return lines


MACHINE = {
    "peak_memory_kind": "cpu_peak_rss",
    "python": "3.11.7",
    "versions": {"peftlab": "0.1.0", "torch": "2.13.0+cpu"},
    "hardware": {"processor": "x86_64", "cpu_count": 2, "cuda": None},
}


def _training(
    lines: list[dict], steps: int | None, seconds_per_step: float, batch_size: int, flops_per_step: float | None
) -> dict:
    """summary.json's training fields; steps None: the method does not train (zero-shot)."""
    last = lines[-1] if lines else {"examples": 0, "tokens": 0}
    out = {
        "best_step": steps or 0,
        "steps": steps or 0,
        "examples_seen": last["examples"],
        "tokens_seen": last["tokens"],
        "lr": 1e-3 if steps is not None else None,
        "train_seconds": round(steps * seconds_per_step, 3) if steps is not None else 0.0,
        "train_examples_per_s": batch_size / seconds_per_step if steps is not None else None,
        "train_tokens_per_s": last["tokens"] / (steps * seconds_per_step) if steps is not None else None,
    }
    if flops_per_step is not None:  # left out: an older run
        out["flops"] = flops_per_step * steps if steps is not None else 0
        out["flops_per_step"] = flops_per_step if steps is not None else 0
    return out


def _write_predictions(
    path: Path, tests: list[tuple[str, str, str]], example_scores: list[float] | None, predictions: list[str] | None
) -> None:
    preds = predictions or [
        ref if (example_scores and example_scores[i] >= 0.5) else _wrong(ref, i) for i, (_, _, ref) in enumerate(tests)
    ]
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "input", "reference", "prediction"] + (["score"] if example_scores is not None else []))
        for i, (eid, inp, ref) in enumerate(tests):
            w.writerow([eid, inp, ref, preds[i]] + ([f"{example_scores[i]:.6g}"] if example_scores is not None else []))


def _parameters(trainable: int) -> dict:
    return {
        "trainable_params": trainable,
        "total_params": TOTAL_PARAMS,
        "trainable_pct": 100 * trainable / TOTAL_PARAMS,
    }


def _write_config(
    path: Path, root: Path, name: str, seed: int, method: str, task: str, batch_size: int, steps: int, eval_every: int
) -> None:
    config = {
        "name": name,
        "output_dir": str(root),
        "seed": seed,
        "model": {"name": "smollm2-135m", "dtype": "auto"},
        "method": {"name": method},
        "task": {"name": task},
        "train": {
            "lr": 1e-3,
            "batch_size": batch_size,
            "grad_accum": 1,
            "max_steps": steps,
            "epochs": None,
            "eval_every": eval_every,
        },
        "eval": {"batch_size": 16, "max_validation": 32, "max_test": None},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def _wrong(ref: str, i: int) -> str:
    """A plausible wrong query: the kinds of mistakes a small model makes."""
    return [
        ref.replace("AVG", "SUM"),
        ref.replace("employees", "employee"),
        ref.split(" WHERE")[0],
        ref.replace("'", '"'),
    ][i % 4]


def binary_scores(accuracy: float, n: int, seed: int) -> list[float]:
    """n per-example 0/1 scores with exactly round(accuracy * n) ones, at seeded positions."""
    k = round(accuracy * n)
    ones = set(random.Random(seed).sample(range(n), k))
    return [1.0 if i in ones else 0.0 for i in range(n)]


# label -> (method, seeds' accuracies, trainable, adapter bytes, FLOPs/step, s/step, peak memory)
SQL_LABELS = {
    "lora": ("lora", [0.859, 0.828], 4_884_480, 19_599_496, 2.9e11, 2.6, 4_100_000_000),
    "full": ("full", [0.844, 0.797], TOTAL_PARAMS, 538_100_000, 4.1e11, 3.1, 4_500_000_000),
    "lora-r4": ("lora", [0.766, 0.703], 1_221_120, 4_900_000, 2.8e11, 2.5, 4_050_000_000),
    "lora+prompt_tuning": ("hybrid", [0.844], 4_896_000, 19_650_000, 3.0e11, 2.7, 4_150_000_000),
    "prompt_tuning": ("prompt_tuning", [0.422, 0.484], 11_520, 46_200, 2.8e11, 2.4, 3_900_000_000),
    "zero_shot": ("none", [0.047], 0, 18, 0.0, 0.0, 1_100_000_000),
}


def sql_comparison(root: Path, n_test: int = 64, with_flops: bool = True) -> Path:
    """A realistic comparison folder (plus a non-run subfolder the report must ignore)."""
    root.mkdir(parents=True, exist_ok=True)
    for li, (label, (method, accs, trainable, adapter, fps, sps, mem)) in enumerate(SQL_LABELS.items()):
        for seed, acc in enumerate(accs):
            scores = binary_scores(acc, n_test, seed=100 * li + seed)
            preds = None
            if label == "zero_shot":
                # Zero-shot chats instead of answering; one answer tries to inject markup.
                preds = [
                    XSS if i == 0 else ("SELECT * FROM employees" if s else "Sure! Here is the query you asked for")
                    for i, s in enumerate(scores)
                ]
            fake_run(
                root,
                f"sql_demo-{label}-s{seed}",
                label=label,
                method=method,
                seed=seed,
                example_scores=scores,
                trainable=trainable,
                adapter_bytes=adapter,
                flops_per_step=fps if with_flops else None,
                seconds_per_step=sps or 1.0,
                peak_memory=mem,
                predictions=preds,
                n_test=n_test,
            )
    (root / "configs").mkdir(exist_ok=True)  # like `peftlab demo`'s configs/: not a run
    return root
