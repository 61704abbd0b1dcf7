"""What was compared, read from the runs' config.yaml and summary.json: model, task, budget, hardware.

The budget line matters for honesty: a comparison is only fair at equal training budget, so
when labels were trained at different budgets the report lists them instead of one line.
"""

from __future__ import annotations

from peftlab.report.aggregate import Comparison
from peftlab.report.runs import Run
from peftlab.report.tables import human_flops
from peftlab.training.budget import BUDGET_KINDS, BudgetKind


def budget(run: Run) -> str:
    """Training budget of one run, e.g. '40 steps × 8 examples' or '2.0 PFLOP, batch 8'; 'no training'
    for zero-shot runs. Reads whichever budget key config.yaml's train section sets."""
    if not run.trains:
        return "no training"
    t = run.config.get("train") or {}
    per_step = (t.get("batch_size") or 0) * (t.get("grad_accum") or 1)
    if t.get("max_steps"):
        return f"{t['max_steps']} steps × {per_step} examples" if per_step else f"{t['max_steps']} steps"
    for kind in BUDGET_KINDS[1:]:  # steps above
        if t.get(kind.config_key):
            return _amount(kind, t[kind.config_key]) + (f", batch {per_step}" if per_step else "")
    steps = run.summary.steps
    return f"{steps} steps" if steps else "-"


def _amount(kind: BudgetKind, value: float) -> str:
    if kind.name == "flops":
        return f"{human_flops(value)}{kind.unit}"
    number = f"{value:,}" if kind.name in ("examples", "tokens") else f"{value:g}"
    return f"{number} {kind.unit}"


def budgets(comp: Comparison) -> str:
    """One budget when every trained label shares it, else 'label: budget' for each."""
    per_label = {e.label: sorted({budget(r) for r in e.runs}) for e in comp.entries}
    trained = {b for bs in per_label.values() for b in bs if b != "no training"}
    if len(trained) <= 1:
        return next(iter(trained), "no training")
    return "differs: " + "; ".join(f"{label} {', '.join(bs)}" for label, bs in per_label.items())


def models(runs: list[Run]) -> str:
    return ", ".join(sorted({str(r.summary.model or (r.config.get("model") or {}).get("name") or "-") for r in runs}))


def hardware(runs: list[Run]) -> str:
    seen = []
    for r in runs:
        hw = r.summary.hardware
        if hw is None:
            continue
        text = hw.cuda or (f"{hw.processor} CPU, {hw.cpu_count} cores" if hw.processor else "")
        if text and text not in seen:
            seen.append(text)
    return "; ".join(seen) or "-"


def facts(comp: Comparison) -> list[tuple[str, str]]:
    """(name, value) pairs for the report header of one comparison."""
    runs = comp.runs
    seeds = sorted({r.seed for r in runs if r.seed is not None})
    examples = sorted({r.summary.test_examples for r in runs if r.summary.test_examples})
    direction = "higher is better" if comp.higher_is_better else "lower is better"
    return [
        ("model", models(runs)),
        ("task", comp.task),
        ("metric", f"{comp.metric} ({direction})"),
        ("budget", budgets(comp)),
        ("labels", f"{len(comp.entries)} ({len(runs)} run{'s' if len(runs) != 1 else ''})"),
        # How many, then which: "0" alone would read as "no seeds".
        (
            "seeds",
            f"{len(seeds)} ({'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))})" if seeds else "-",
        ),
        ("test examples", ", ".join(map(str, examples)) or "-"),
        ("hardware", hardware(runs)),
    ]
