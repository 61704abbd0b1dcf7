"""`models: [a, b, ...]` in an experiment: every method on each model, then one report across them.

Each model's runs form an ordinary single-model comparison in the sub-folder named after the model
(experiment.model_folder), with its own lr search, leaderboard and report, so that everything a
comparison does (resume, skip finished runs, a parallel pool) works per model unchanged. Every
model's runs are checked before the first one trains: a method that does not fit the second model is
found now, not after the first model's hours. The top folder holds models.json (which sub-folder is
which model) and the report across models: each model's leaderboard and the cross-model table
(report/cross_model.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftlab.comparison.compare_checks import runs_failed
from peftlab.comparison.experiment import CompareConfig
from peftlab.console import console
from peftlab.rundir.diskspace import ensure_writable_dir
from peftlab.rundir.models_index import write_index


def compare_models(
    cc: CompareConfig,
    source: str,
    overwrite: bool,
    check: Callable[[CompareConfig, str, bool], Any],
    run: Callable[[Any, bool], list[str]],
) -> Path:
    """Check every model's comparison (``check``: compare.check_comparison), run each in turn (``run``:
    compare.run_comparison), then write the report across models; returns the top folder.

    The two steps are passed in by compare.py, which calls this: imported here, the two modules would
    import each other."""
    from peftlab.report import build_report, cross_model_view  # local: pulls in matplotlib

    subs = cc.per_model()
    checked = [check(sub, f"{source} (models: {sub.model.name})", overwrite) for sub in subs]
    folder = cc.folder()
    ensure_writable_dir(folder, "output_dir")
    write_index(folder, [(sub.model.name, sub.name) for sub in subs])
    failed: list[str] = []
    for i, (sub, ready) in enumerate(zip(subs, checked), 1):
        console.rule(f"[bold]model {i}/{len(subs)}[/bold]: {sub.model.name} -> {sub.folder()}")
        failed += [f"{sub.name}/{name}" for name in run(ready, overwrite)]
    if cc.detached():
        console.print(f"when every model's runs have ended: peftlab report {folder} (the report across models)")
        return folder
    report = build_report(folder, examples=cc.examples)
    for cm in report.across:
        for line in cross_model_view.verdict_lines(cm):
            console.print(f"- {line}")
    console.print(f"report across {len(subs)} models: {report.write()}")
    if failed:
        raise runs_failed(failed)
    return folder
