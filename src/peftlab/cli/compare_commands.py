"""`peftlab compare`'s command line: the experiment file and where its runs go (launch/).
Imports stay inside the function that runs the command, so `peftlab --help` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from peftlab.cli.options import int_in


def _compare(args) -> None:
    from peftlab.comparison.compare import compare

    launcher = {"name": args.launcher, "parallel": args.parallel, "wait": args.wait}
    if args.devices is not None:
        launcher["devices"] = [d.strip() for d in args.devices.split(",") if d.strip()]
    compare(
        Path(args.experiment), overwrite=args.overwrite, launcher={k: v for k, v in launcher.items() if v is not None}
    )


def compare_command(sub, epilog: str) -> None:
    """compare: a grid of runs at one budget, spread by a launcher."""
    c = sub.add_parser(
        "compare",
        help="run every method x seed of an experiment at one budget, then the report",
        epilog="Example: peftlab compare configs/sql_demo/compare.yaml. Rerunning skips finished runs "
        "and resumes interrupted ones. " + epilog,
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
        "--trust-remote-code",
        action="store_true",
        help="allow the Python shipped in the model folder, for an experiment whose model section asks for it "
        "(trust_remote_code: true); its runs get the same flag. Only for code you have read or trust",
    )
    c.set_defaults(func=_compare)
