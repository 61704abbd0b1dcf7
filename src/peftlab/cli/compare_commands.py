"""`peftlab compare`, `demo` and `report`: a grid of runs at one budget, the packaged one, and the report
of a comparison folder. Imports stay inside the functions that run the commands, so `peftlab --help`
stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from peftlab.cli.options import EPILOG, int_in


def add_compare(sub) -> None:
    c = sub.add_parser(
        "compare",
        help="run every method x seed of an experiment at one budget, then the report",
        epilog="Example: peftlab compare configs/sql_demo/compare.yaml. Rerunning skips finished runs "
        "and resumes interrupted ones. " + EPILOG,
    )
    c.add_argument(
        "experiment", help="experiment YAML: model, task, budget, seeds, methods (see configs/*/compare.yaml)"
    )
    c.add_argument("--overwrite", action="store_true", help="rerun finished runs too")
    c.add_argument(
        "--launcher",
        choices=["local", "slurm", "ray"],
        help="where the runs go (default: the experiment's launcher: section, else local): a process pool "
        "here, a Slurm job array (peftlab[slurm]) or Ray tasks (peftlab[ray])",
    )
    c.add_argument("--parallel", type=int_in(1), metavar="N", help="local: at most N (>= 1) runs at once (default 1)")
    c.add_argument(
        "--devices", metavar="0,1,..", help="local: GPU ids; each run gets its own CUDA_VISIBLE_DEVICES slot(s)"
    )
    c.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="slurm: wait for the array and write the report here (--no-wait: submit, and a dependent job "
        "writes the report)",
    )
    c.add_argument(
        "--models",
        metavar="A,B,..",
        help="run the experiment on these models instead of its model section: names or folders, comma-separated; "
        "two or more give one leaderboard per model and the table across them (e.g. smollm2-135m,./my-model)",
    )
    c.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the Python shipped in the model folder, for an experiment whose model section asks for it "
        "(trust_remote_code: true); its runs get the same flag. Only for code you have read or trust",
    )
    c.add_argument(
        "--plan",
        "--dry-run",
        dest="plan",
        action="store_true",
        help="check every run config and print the runs (label, method, seed, lr search), steps, FLOPs per step, "
        "trainable parameters and an estimated wall time per run and in all, from a short timed probe of each "
        "method on this machine; nothing is trained or written",
    )
    c.add_argument("--json", action="store_true", help="with --plan: the plan as JSON on stdout")
    c.set_defaults(func=do_compare)


def do_compare(args) -> None:
    from peftlab.comparison.compare import compare
    from peftlab.errors import PeftlabError

    if args.json and not args.plan:
        raise PeftlabError("--json goes with --plan (the plan as JSON)")
    models = None
    if args.models is not None:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models:
            raise PeftlabError(f"--models {args.models!r}: give model names or folders, comma-separated")
    launcher = {"name": args.launcher, "parallel": args.parallel, "wait": args.wait}
    if args.devices is not None:
        launcher["devices"] = [d.strip() for d in args.devices.split(",") if d.strip()]
    if args.plan:
        show_plan(Path(args.experiment), {k: v for k, v in launcher.items() if v is not None}, args.json)
        return
    launcher = {k: v for k, v in launcher.items() if v is not None}
    compare(Path(args.experiment), overwrite=args.overwrite, launcher=launcher, models=models)


def show_plan(path: Path, launcher: dict, as_json: bool) -> None:
    """`compare --plan`: the plan on stdout, as text or JSON."""
    import json

    from peftlab.comparison.plan import make_plan, plan_lines

    plan = make_plan(path, launcher)
    print(json.dumps(plan.to_json(), indent=1) if as_json else "\n".join(plan_lines(plan)))


def add_demo(sub) -> None:
    d = sub.add_parser(
        "demo",
        help="zero-shot vs full fine-tuning vs LoRA on the built-in text-to-SQL task",
        description="The main job on the embedded default model (SmolLM2-135M-Instruct), offline on CPU: "
        "zero-shot, full fine-tuning and LoRA on the built-in text-to-SQL task, run as a `peftlab compare` "
        "experiment (written to OUTPUT_DIR/compare.yaml), then three test questions side by side and the "
        "leaderboard; the report (leaderboard.md/.csv/.json, plots, report.html) is written to OUTPUT_DIR.",
    )
    d.add_argument(
        "--output-dir",
        default="runs/demo",
        help="the comparison folder: the three run folders and the report (default: runs/demo)",
    )
    d.add_argument("--steps", type=int_in(1), default=None, help="training steps per method, >= 1 (default: 30)")
    d.add_argument(
        "--overwrite", action="store_true", help="rerun finished runs too (needed when --steps changed since they ran)"
    )
    d.add_argument(
        "--lr-search",
        action="store_true",
        help="search each method's lr (its default x1/3, x1, x3; about 1.8x the time) instead of training at the "
        "values that search chose for the default demo (full 5e-5, LoRA 3e-3; other --steps are always searched)",
    )
    d.set_defaults(func=do_demo)


def do_demo(args) -> None:
    from peftlab.comparison.demo import run_demo

    run_demo(output_dir=Path(args.output_dir), steps=args.steps, overwrite=args.overwrite, lr_search=args.lr_search)


def add_report(sub) -> None:
    rp = sub.add_parser(
        "report",
        help="leaderboard, learning curves, Pareto plots and an HTML page for a folder of runs",
        epilog=EPILOG,
        description="Read the finished runs in DIR (its subfolders with a summary.json; nothing is "
        "re-run), group them by label, and write into DIR: leaderboard.md/.csv/.json (mean ± std over "
        "seeds, costs, ties with the best), plots/*.png (validation metric vs FLOPs, seconds and "
        "examples; Pareto frontiers of test metric vs trainable parameters, FLOPs and peak memory) and "
        "report.html, one self-contained file that opens offline. Prints the leaderboard, and "
        "report.html's path on stdout.",
    )
    rp.add_argument("dir", metavar="DIR", help="a comparison folder holding run folders, e.g. runs/demo")
    rp.add_argument(
        "--examples",
        type=example_indices,
        default=None,
        metavar="I,J,...",
        help="test-example indices (rows of predictions.csv) to show side by side "
        "(default: 0,1,42,123,250, those that exist)",
    )
    rp.set_defaults(func=do_report)


def example_indices(text: str) -> list[int]:
    """An argparse type: comma-separated test-example indices, each >= 0."""
    try:
        indices = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        indices = None
    if indices is None or any(i < 0 for i in indices):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated test-example indices (whole numbers >= 0) such as 0,42,7; got {text!r}"
        )
    return indices


def do_report(args) -> None:
    from peftlab.console import console
    from peftlab.report import build_report, print_report

    report = build_report(Path(args.dir), args.examples)
    path = report.write()
    print_report(report)
    console.print(f"report: {path}")
    print(path)  # on stdout alone, for scripts: open "$(peftlab report runs/x)"
