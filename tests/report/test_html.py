"""report.html is self-contained and safe; plots are written or skipped with a note; side by side."""

from __future__ import annotations

import json
import re

from peftlab.report import write_report
from peftlab.report.explorer import SCRIPT
from tests.report.fakes import XSS, fake_run, sql_comparison

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_files_and_plots(tmp_path):
    html_path = write_report(sql_comparison(tmp_path / "cmp"))
    folder = html_path.parent
    assert html_path == folder / "report.html"
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json"):
        assert (folder / name).stat().st_size > 0
    plots = sorted(p.name for p in (folder / "plots").iterdir())
    assert plots == [
        f"sql_demo-{n}.png"
        for n in (
            "curve-examples",
            "curve-flops",
            "curve-seconds",
            "pareto-flops",
            "pareto-peak_memory_bytes",
            "pareto-trainable_params",
        )
    ]
    assert all((folder / "plots" / p).read_bytes().startswith(PNG) for p in plots)
    html = html_path.read_text()
    assert html.count('src="data:image/png;base64,') == 6
    # Atomic writes leave no temporary files behind; the non-run folder configs/ is ignored.
    assert not [p for p in folder.rglob(".*") if p.is_file()]
    assert "configs" not in (folder / "leaderboard.md").read_text()


def test_html_escapes_predictions_and_loads_nothing_from_the_network(tmp_path):
    html = write_report(sql_comparison(tmp_path / "cmp"), examples=[0, 3]).read_text()
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the report's one script is the explorer's; it fetches nothing (no URL, no fetch/XHR in it)
    assert html.lower().count("<script") == 1 and f"<script>{SCRIPT}</script>" in html
    assert not re.search(r"fetch\(|XMLHttpRequest|https?:|import\(", SCRIPT.replace("http://www.w3.org/2000/svg", ""))
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", html, flags=re.IGNORECASE)
    assert refs, "expected image sources and in-page links"
    assert all(r.startswith(("data:", "#")) for r in refs), [r for r in refs if not r.startswith(("data:", "#"))]
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", html, flags=re.IGNORECASE)
    assert "@import" not in html and "url(" not in html
    assert "Content-Security-Policy" in html


def test_header_and_side_by_side(tmp_path):
    html = write_report(sql_comparison(tmp_path / "cmp"), examples=[3, 0]).read_text()
    for fact in ("smollm2-135m", "sql_demo", "40 steps × 8 examples", "execution_accuracy (higher is better)"):
        assert fact in html
    assert html.index("test example #3") < html.index("test example #0")
    # Every label's prediction is shown, zero-shot included; the input sits in a <details>.
    block = html[html.index("test example #3") : html.index("test example #0")]
    for label in ("lora", "full", "lora-r4", "lora+prompt_tuning", "prompt_tuning", "zero_shot"):
        assert f"{label}</td>" in block
    assert '<details class="input">' in block
    assert "Who earns the most in Marketing?" in block  # test-3's question, from the fake test set


def test_plots_skipped_with_a_note_without_flops(tmp_path):
    folder = sql_comparison(tmp_path / "cmp", with_flops=False)
    html = write_report(folder).read_text()
    assert not (folder / "plots" / "sql_demo-curve-flops.png").exists()
    assert not (folder / "plots" / "sql_demo-pareto-flops.png").exists()
    assert (folder / "plots" / "sql_demo-curve-seconds.png").exists()
    assert html.count('src="data:image/png;base64,') == 4
    assert "Not drawn:" in html and "no run records training FLOPs" in html


def test_stale_plots_are_removed(tmp_path):
    folder = sql_comparison(tmp_path / "cmp")
    write_report(folder)
    assert (folder / "plots" / "sql_demo-pareto-flops.png").exists()
    for run in folder.iterdir():  # the runs lose their FLOPs: the old plot must not linger
        if (run / "summary.json").exists():
            summary = json.loads((run / "summary.json").read_text())
            summary.pop("flops"), summary.pop("flops_per_step")
            (run / "summary.json").write_text(json.dumps(summary))
            (run / "metrics.jsonl").unlink(missing_ok=True)
    write_report(folder)
    assert not (folder / "plots" / "sql_demo-pareto-flops.png").exists()
    assert not (folder / "plots" / "sql_demo-curve-seconds.png").exists()


def test_runs_without_new_fields_still_report(tmp_path):
    """Runs written before label / flops / score existed: grouped by method, '-' for FLOPs, undecided ties."""
    fake_run(tmp_path, "a", label=None, method="lora", seed=0, example_scores=None, score=0.8)
    fake_run(tmp_path, "b", label=None, method="full", seed=0, example_scores=None, score=0.7)
    html = write_report(tmp_path).read_text()
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| lora | 0.800 | 1 | best |" in md
    assert "? Δ0.100 (no per-example scores)" in md
    assert "no per-example scores" in html
