"""The report's interactive Pareto explorer: pick the two axes, hover a point for its run, filter labels.

One point per run (each seed its own point, coloured by label), so the spread between seeds stays
visible; points of the top group (report/top_group.py, the leaderboard's rule) carry a ring, and
the hover names the label's standing. The points travel as JSON in a ``data-explorer`` attribute
(HTML-escaped like every other piece of data, so a label cannot close the attribute), and one
inline script (``explorer.js``) draws them as SVG. The page's Content-Security-Policy admits that
script alone, by its SHA-256 hash: injected markup still cannot run, and nothing is fetched.
Without script the static Pareto plots above still say everything; the explorer then shows a
one-line note instead.

matplotlib draws the static plots; it has no interactive output that works in a self-contained
page without its own JavaScript bundle, so this small script is written here.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from dataclasses import dataclass
from importlib.resources import files

from peftlab.report.aggregate import Comparison
from peftlab.report.measures import IN_DOMAIN


@dataclass(frozen=True)
class Axis:
    key: str  # a RunSummary field or property; "score" is the test's primary metric
    name: str
    unit: str = ""  # "B" for bytes: shown with binary-free SI prefixes (kB, MB, GB)
    higher_is_better: bool = False  # costs are better low; the score's direction comes from the task


AXES = (
    Axis("score", "test score", higher_is_better=True),
    Axis("trainable_params", "trainable parameters"),
    Axis("adapter_bytes", "adapter bytes", unit="B"),
    Axis("flops", "training FLOPs"),
    Axis("train_seconds", "train seconds", unit="s"),
    Axis("peak_memory_bytes", "peak memory", unit="B"),
    Axis("forgetting_delta", "forgetting (LM loss Δ)"),
    Axis("ms_per_token", "decode ms/token (batch 1)"),
    Axis("prefill_ms_per_prompt", "prefill ms/prompt (batch 1)"),
)
SCRIPT = files("peftlab.report").joinpath("explorer.js").read_text(encoding="utf-8")
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")


def _number(value) -> float | None:
    """A float JSON can carry; None for a missing or non-finite value (a diverged run's NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def data(comp: Comparison, colors: dict[str, str]) -> dict:
    """What the script draws: the axes some run has, and one point per run."""
    points = []
    for e in comp.entries:
        for r in e.runs:
            values = {a.key: _number(r.score if a.key == "score" else getattr(r.summary, a.key, None)) for a in AXES}
            points.append(
                {
                    "label": e.label,
                    "run": r.name,
                    "seed": r.seed,
                    "color": colors.get(e.label, "#6b7280"),
                    # The leaderboard's own verdict (report/top_group.py): one rule everywhere.
                    "top": e.tie.in_top_group,
                    "standing": e.tie.word,
                    **values,
                }
            )
    axes = []
    in_domain = any(r.summary.forgetting_in_domain for r in comp.runs)
    for a in AXES:
        if any(p[a.key] is not None for p in points):
            higher = comp.higher_is_better if a.key == "score" else a.higher_is_better
            name = f"test {comp.metric}" if a.key == "score" else a.name
            name = IN_DOMAIN if in_domain and a.key == "forgetting_delta" else name
            axes.append({"key": a.key, "name": name, "unit": a.unit, "higher": higher})
    return {"axes": axes, "points": points, "x": "trainable_params", "y": "score"}


def section(comp: Comparison, colors: dict[str, str]) -> str:
    """The explorer's HTML: controls and an empty SVG, filled in by the script."""
    payload = json.dumps(data(comp, colors), separators=(",", ":"), allow_nan=False)
    return (
        f'<h2>Explore<span class="sub">{html.escape(comp.title)} · pick the axes, hover a point, '
        "filter labels</span></h2>"
        f'<div class="explorer" data-explorer="{html.escape(payload, quote=True)}">'
        '<p class="note noscript">The interactive explorer needs JavaScript; the plots above show the same data.</p>'
        "</div>"
    )


def script_tag() -> str:
    return f"<script>{SCRIPT}</script>"
