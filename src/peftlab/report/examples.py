"""Side-by-side outputs: for a few test examples, the input, the reference and every label's prediction.

Indices count rows of predictions.csv (the test split's order, the same for every run of a task).
The order is taken from the best label's first run; other labels' predictions are matched by id,
so a run that scored a different subset shows "no prediction" rather than a wrong row. A label
with several seeds shows its first seed's prediction (outputs of seeds are often near-identical
and the leaderboard already reports their spread).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape

from peftlab.console import console
from peftlab.report.aggregate import Comparison
from peftlab.report.runs import Prediction, Run
from peftlab.rundir.runio import REFERENCE_SEPARATOR

# Fixed, so reports of the same comparison always show the same examples; far-apart indices
# sample beyond the first few (often the easiest or shortest) examples.
DEFAULT_EXAMPLES = (0, 1, 42, 123, 250)


@dataclass
class Output:
    label: str
    run: str
    prediction: str | None  # None: this run has no prediction for the example's id
    score: float | None


@dataclass
class Example:
    index: int
    id: str
    input: str
    references: list[str]
    outputs: list[Output]


def canonical_run(comp: Comparison) -> Run | None:
    """The run whose predictions.csv defines the example order: the best label's first run with predictions."""
    return next((r for e in comp.entries for r in e.runs if r.predictions), None)


def available(comp: Comparison) -> int:
    run = canonical_run(comp)
    return len(run.predictions) if run else 0


def side_by_side(comp: Comparison, indices: list[int]) -> list[Example]:
    """The examples at ``indices`` (those that exist), in the order given."""
    base = canonical_run(comp)
    if base is None:
        return []
    by_label = {e.label: next((r for r in e.runs if r.predictions), e.runs[0]) for e in comp.entries}
    lookup = {label: {p.id: p for p in run.predictions} for label, run in by_label.items()}
    out = []
    for i in indices:
        if not 0 <= i < len(base.predictions):
            continue
        row = base.predictions[i]
        outputs = []
        for label, run in by_label.items():
            p: Prediction | None = lookup[label].get(row.id)
            outputs.append(Output(label, run.name, p.prediction if p else None, p.score if p else None))
        out.append(Example(i, row.id, row.input, row.reference.split(REFERENCE_SEPARATOR), outputs))
    return out


def print_examples(examples: list[Example]) -> None:
    """The examples on the console: input, reference(s), then every label's prediction."""
    for ex in examples:
        # Inputs and predictions are data (model output may hold '[...]'): never rich markup.
        console.print(f"[bold]test example {escape(ex.id)}[/bold]: {escape(ex.input)}")
        console.print(f"  [green]reference[/green]  {escape(REFERENCE_SEPARATOR.join(ex.references))}")
        for o in ex.outputs:
            text = "(no prediction)" if o.prediction is None else o.prediction or "(empty)"
            console.print(f"  [cyan]{escape(o.label)}[/cyan]  {escape(text)}")
