"""From runs to leaderboard entries: one per label, mean ± std over seeds, ranked, ties marked.

Runs are first split into comparisons by (task, primary metric, direction, model): ranking a ROUGE
score against an accuracy is meaningless, a folder such as runs/ may hold several tasks, and two
models' runs of one label are not seeds of one setting (a several-model comparison ranks the methods
on each model, then across them: cross_model.py).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from peftlab.report import deviations, sample_size
from peftlab.report.runs import Run
from peftlab.report.ties import label_sample
from peftlab.report.top_group import Family, Verdict, top_group
from peftlab.report.validity import check_same_examples, check_seeds_of_one_setting
from peftlab.tasks.metrics import better_sign

# Cost columns averaged over a label's seeds: RunSummary fields (absent in older runs: then None,
# shown as "-").
COSTS = (
    "trainable_params",
    "total_params",
    "trainable_pct",
    "adapter_bytes",
    "flops",
    "flops_per_step",
    "train_seconds",
    "train_tokens_per_s",
    "peak_memory_bytes",
)
# Derived from summary fields (RunSummary properties), averaged the same way: budget.spent / budget.amount,
# forgetting's LM loss after - before, inference decode ms per token and prefill ms per prompt.
DERIVED = ("budget_used", "forgetting_delta", "ms_per_token", "prefill_ms_per_prompt")


@dataclass
class Entry:
    """One label of one comparison."""

    label: str
    runs: list[Run]
    mean: float
    std: float | None  # sample std (ddof=1); None with one seed
    costs: dict[str, float | None]
    memory_kind: str
    override: str | None = None  # why this label's settings differ from the comparison's (compare's `override:`)
    deviations: list[str] = field(default_factory=list)  # report/deviations.py: unlike the others or the paper
    tie: Verdict = field(default_factory=lambda: Verdict("best", ""))  # its place against the top group

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def shown_label(self) -> str:
        """The label as tables show it: marked † when its settings were overridden or it departs from the
        others' training settings or from its method's paper."""
        return f"{self.label} †" if self.override or self.deviations else self.label

    @property
    def note(self) -> str | None:
        """What the † stands for, in one line."""
        parts = ([f"settings differ from the comparison's: {self.override}"] if self.override else []) + self.deviations
        return "; ".join(parts) or None

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.runs]


@dataclass
class Comparison:
    """Labels on one task and metric, best first."""

    task: str
    metric: str
    higher_is_better: bool
    entries: list[Entry]
    family: Family | None = None  # what the top group rests on (top_group.py)
    model: str = "-"  # the base model every run of it fine-tuned
    title: str = ""  # how headings name it: the task, with the model when a report holds several models

    @property
    def top_group(self) -> list[Entry]:
        return [e for e in self.entries if e.tie.in_top_group]

    @property
    def runs(self) -> list[Run]:
        return [r for e in self.entries for r in e.runs]


def compare_runs(runs: list[Run]) -> list[Comparison]:
    """Group runs into comparisons and rank each one."""
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault((r.summary.task, r.metric, r.higher_is_better, r.model), []).append(r)
    several = len({model for *_, model in groups}) > 1
    out = []
    for (task, metric, hib, model), rs in groups.items():
        comp = rank(task, metric, hib, rs)
        comp.model, comp.title = model, f"{task} · {model}" if several else task
        out.append(comp)
    return out


def rank(task: str, metric: str, higher_is_better: bool, runs: list[Run]) -> Comparison:
    check_same_examples(task, runs)
    by_label: dict[str, list[Run]] = {}
    for r in runs:
        by_label.setdefault(r.label, []).append(r)
    for label, rs in by_label.items():
        check_seeds_of_one_setting(label, rs)
    entries = [make_entry(label, sorted(rs, key=lambda r: (str(r.seed), r.name))) for label, rs in by_label.items()]
    train_notes = deviations.train_deviations(by_label)
    for e in entries:
        e.deviations = train_notes.get(e.label, []) + deviations.method_deviations(e.runs)
    entries.sort(key=lambda e: (-better_sign(higher_is_better) * e.mean, e.label))  # best first
    family = mark_ties(entries, higher_is_better)
    return Comparison(task, metric, higher_is_better, entries, family, title=task)


def make_entry(label: str, runs: list[Run]) -> Entry:
    scores = [r.score for r in runs]
    costs = {k: _mean([getattr(r.summary, k) for r in runs]) for k in COSTS + DERIVED}
    kinds = sorted({r.summary.peak_memory_kind for r in runs if r.summary.peak_memory_kind})
    return Entry(
        label=label,
        runs=runs,
        mean=statistics.fmean(scores),
        std=statistics.stdev(scores) if len(scores) >= 2 else None,
        costs=costs,
        memory_kind=", ".join(kinds),
        override=runs[0].config.get("override"),
    )


def mark_ties(entries: list[Entry], higher_is_better: bool) -> Family | None:
    """Every entry gets its Verdict by the family-wise rule of top_group.py (the first is the best), and
    every top-group entry behind the best its sample-size advice (sample_size.py)."""
    if not entries:
        return None
    samples, seeds = family_inputs(entries)
    verdicts, family = top_group(
        [e.label for e in entries], [e.mean for e in entries], samples, higher_is_better, seeds
    )
    for e, v in zip(entries, verdicts):
        e.tie = v
    pooled = sample_size.pooled_seed_variances(samples)
    for e, s, n in zip(entries[1:], samples[1:], seeds[1:]):
        if e.tie.verdict != "tie" or s is None or samples[0] is None or family.critical is None:
            continue
        comp = sample_size.components(samples[0], s, (seeds[0] is not None, n is not None), pooled, family.labels)
        if comp is not None:
            e.tie.advice = sample_size.advice(comp, e.tie.delta, family.critical, family.examples)
    return family


def family_inputs(entries: list[Entry]) -> tuple[list, list[int | None]]:
    """What top_group needs of each entry besides its label and mean: its per-example sample, and its
    number of seeds (None: a label that does not train runs once and has no training noise; several seeds
    mean it has some)."""
    samples = [label_sample(e.runs) for e in entries]
    seeds = [e.n if e.n > 1 or any(r.trains for r in e.runs) else None for e in entries]
    return samples, seeds


def _mean(values: list) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.fmean(nums) if nums else None
