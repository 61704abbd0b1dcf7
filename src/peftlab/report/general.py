"""lm-eval scores in the report (measure/general.py writes them): per task and metric a leaderboard
column with each label's mean over seeds, and one with its change from the base model ("Δ base"); a
bar chart of that change per label.

Read from the run folders' lm_eval.json and the comparison folder's lm_eval_base.json; a comparison
without them shows none of this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import matplotlib
from matplotlib.figure import Figure

from peftlab.report.aggregate import Comparison, Entry
from peftlab.report.plots import SIZE, STYLE, Plot, _render, label_colors

RUN_FILE, BASE_FILE = "lm_eval.json", "lm_eval_base.json"  # measure/general.py's RUN_FILE and BASE_FILE
NOTE = (
    "lm_eval <task> <metric>: lm-evaluation-harness on the adapted model after training (mean over seeds); "
    "Δ base: that minus the base model's score on the same documents (a metric's own direction: lower is "
    "better for perplexities and bits_per_byte)."
)


@dataclass(frozen=True)
class Score:
    task: str
    metric: str

    @property
    def column(self) -> str:
        return f"lm_eval {self.task} {self.metric}"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("scores") or {} if isinstance(data, dict) else {}


def base_scores(comp: Comparison) -> dict:
    folders = {r.dir.parent for r in comp.runs}
    return next((s for f in sorted(folders) if (s := _read(f / BASE_FILE))), {})


def _run_scores(e: Entry) -> list[dict]:
    return [s for r in e.runs if (s := _read(Path(r.dir) / RUN_FILE))]


def present(comp: Comparison) -> list[Score]:
    """The (task, metric) pairs some run of ``comp`` was scored on, sorted."""
    found = {(t, m) for e in comp.entries for s in _run_scores(e) for t, ms in s.items() for m in ms}
    return [Score(t, m) for t, m in sorted(found)]


def value(e: Entry, s: Score) -> float | None:
    got = [r[s.task][s.metric] for r in _run_scores(e) if s.metric in r.get(s.task, {})]
    return mean(got) if got else None


def delta(comp: Comparison, e: Entry, s: Score, base: dict | None = None) -> float | None:
    v = value(e, s)
    b = (base if base is not None else base_scores(comp)).get(s.task, {}).get(s.metric)
    return None if v is None or b is None else v - b


def header(comp: Comparison) -> list[str]:
    return [h for s in present(comp) for h in (s.column, "Δ base")]


def cells(comp: Comparison, e: Entry) -> list[str]:
    base, out = base_scores(comp), []
    for s in present(comp):
        v, d = value(e, s), delta(comp, e, s, base)
        out += ["-" if v is None else f"{v:.3f}", "-" if d is None else f"{d:+.3f}"]
    return out


def record(comp: Comparison, e: Entry) -> dict:
    """The raw numbers for leaderboard.csv / .json."""
    base, out = base_scores(comp), {}
    for s in present(comp):
        out[s.column] = value(e, s)
        out[f"{s.column} Δ base"] = delta(comp, e, s, base)
        out[f"{s.column} base"] = base.get(s.task, {}).get(s.metric)
    return out


def plot(comp: Comparison) -> list[Plot]:
    """One bar chart: per label, grouped by task metric, the change from the base model."""
    scores = present(comp)
    if not scores:
        return []
    base, colors = base_scores(comp), label_colors(comp)
    p = Plot("lm_eval-delta", "lm-eval: change from the base", "lm-eval score after training minus the base model's")
    if not base:
        p.note = f"no {BASE_FILE} in the comparison folder (the base model was not scored)"
        return [p]
    fig = Figure(figsize=SIZE)
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        width = 0.8 / max(1, len(comp.entries))
        for i, e in enumerate(comp.entries):
            ds = [delta(comp, e, s, base) for s in scores]
            xs = [k + (i - (len(comp.entries) - 1) / 2) * width for k in range(len(scores))]
            ax.bar(xs, [0 if d is None else d for d in ds], width, label=e.label, color=colors.get(e.label))
        ax.axhline(0, color="#374151", linewidth=0.8)
        ax.set_xticks(range(len(scores)), [f"{s.task}\n{s.metric}" for s in scores])
        ax.set_ylabel("Δ base (score units)")
        ax.set_title(p.title)
        ax.legend(loc="best")
    p.png = _render(fig)
    return [p]
