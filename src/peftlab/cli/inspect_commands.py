"""`peftlab attribute`, `data` and `params`: the inspect subcommands' command lines (inspect/ does the work).
Imports stay inside the functions that run the commands, so `peftlab --help` stays fast."""

from __future__ import annotations

from pathlib import Path

from peftlab.cli.options import EPILOG, int_in, remote_code_flag

MAX_IG_STEPS = 1024  # as inspect/ig.py's MAX_STEPS: Gauss-Legendre nodes come from an n x n eigenproblem


def add_attribute(sub) -> None:
    at = sub.add_parser(
        "attribute",
        help="which input tokens drove a run's output (integrated gradients heatmap)",
        epilog=EPILOG,
        description="Generate the run's output for one example (greedy; the picked label or option for "
        "classification and multiple choice), then attribute log p(output | prompt) to every input "
        "token, soft-prompt tokens included, with integrated gradients over the input embeddings "
        "(Sundararajan et al., 2017). Writes RUN_DIR/attributions/<split>-<N>.png (heatmap), .html "
        "(snippet) and .json (tokens, scores, completeness gap).",
    )
    at.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `peftlab train`")
    at.add_argument(
        "--example", type=int_in(0), required=True, metavar="N", help="index (>= 0) of the example in the split"
    )
    at.add_argument("--split", default="test", choices=["train", "validation", "test"], help="default: test")
    at.add_argument(
        "--steps",
        type=int_in(1, MAX_IG_STEPS),
        default=32,
        help=f"points on the integration path, 1..{MAX_IG_STEPS} (default: 32)",
    )
    at.add_argument(
        "--rule",
        default="gauss-legendre",
        choices=["gauss-legendre", "trapezoid"],
        help="quadrature rule along the path (default: gauss-legendre)",
    )
    at.add_argument(
        "--baseline",
        default="pad",
        choices=["pad", "mean", "zero"],
        help="embedding every input token starts from: the pad token's (default), the mean vocabulary "
        "embedding, or zeros (degenerate on RMSNorm models without position embeddings: Llama, T5)",
    )
    at.add_argument(
        "--batch-size", type=int_in(1), default=4, help="path points per forward/backward pass, >= 1 (default: 4)"
    )
    remote_code_flag(at)
    at.set_defaults(func=do_attribute)


def do_attribute(args) -> None:
    from peftlab.inspect.commands import run_attribute

    run_attribute(Path(args.run_dir), args.split, args.example, args.steps, args.rule, args.baseline, args.batch_size)


def add_data(sub) -> None:
    da = sub.add_parser(
        "data",
        help="token lengths, labels, truncation and formatted examples of a task's data",
        epilog=EPILOG,
        description="Tokenize a split with the model's tokenizer and show input and target length "
        "histograms, examples over max_source_tokens / max_target_tokens, examples per label "
        "(classification, multiple choice) and a few examples exactly as the model sees them (chat "
        "template). Writes lengths-<split>.png, labels-<split>.png and data-<split>.json to --out.",
    )
    da.add_argument(
        "target",
        metavar="TASK_OR_CONFIG",
        help="a run or experiment config YAML, or a task name (e.g. dialogsum with --data-dir)",
    )
    da.add_argument("--model", default=None, help="tokenizer's model (default: the config's, else smollm2-135m)")
    da.add_argument("--split", default="train", choices=["train", "validation", "test"], help="default: train")
    da.add_argument("--data-dir", default=None, help="folder of the task's files, e.g. ../shared/data/dialogsum")
    da.add_argument("--out", default=None, help="folder for the PNGs and JSON (default: runs/data-<task>/)")
    da.add_argument("--examples", type=int_in(0), default=3, help="formatted examples to print, >= 0 (default: 3)")
    remote_code_flag(da)
    da.set_defaults(func=do_data)


def do_data(args) -> None:
    from peftlab.inspect.commands import run_data

    run_data(args.target, args.model, args.split, args.data_dir, args.out, args.examples)


def add_params(sub) -> None:

    pa = sub.add_parser(
        "params",
        help="total and trainable parameters per module group, and adapter bytes, per method",
        epilog=EPILOG,
        description="Apply a method to a fresh copy of MODEL (nothing is trained) and count total, "
        "added and trainable parameters per module group (embeddings, attention, MLP, norms, head, "
        "virtual tokens), and the adapter's bytes as the method saves it. --method all: one row per "
        "method with its default options.",
    )
    pa.add_argument("model", metavar="MODEL", help="smollm2-135m, tiny-llama, a hub id or a local folder")
    pa.add_argument("--method", default="all", help="a method (see `peftlab methods`) or 'all' (default)")
    pa.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="method.KEY=VALUE",
        help="a method option, e.g. --set method.rank=8 (repeatable)",
    )
    pa.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pa.set_defaults(func=do_params)


def do_params(args) -> None:
    from peftlab.inspect.commands import run_params

    run_params(args.model, args.method, args.set, args.json)
