"""Command line: each subcommand maps to one function of the package.

User mistakes (PeftlabError) print a message and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from peftlab.cli.compare_commands import compare_command
from peftlab.cli.inspect_commands import _attribute_command, _inspect_commands
from peftlab.cli.options import EPILOG, _remote_code_flag, int_in
from peftlab.errors import PeftlabError

# Upper bounds of numeric flags, the same as the config's and the library's (eval.num_beams in config.py,
# MAX_STEPS in inspect/ig.py: cli_inspect.py), written out here so that `peftlab --help` does not import them.
MAX_BEAMS = 64  # beams multiply the generation batch: a width in the thousands only runs out of memory


def _train(args) -> None:
    from peftlab.config import load_config
    from peftlab.models.loading import check_remote_code
    from peftlab.training.train import train

    if isinstance(args.resume, str):  # peftlab train --resume RUN_DIR: the run folder's own config
        from peftlab.evaluation.evaluate import run_config_path

        if args.config is not None:
            raise PeftlabError("give either a config or --resume RUN_DIR, not both")
        if args.set:
            raise PeftlabError("--set cannot change a run that is resumed (its checkpoint belongs to its config)")
        run_dir = Path(args.resume)
        cfg = load_config(run_config_path(run_dir))
        check_remote_code(cfg.model, run_config_path(run_dir))
        if cfg.run_dir().resolve() != run_dir.resolve():
            raise PeftlabError(
                f"{run_dir}: its config places the run at {cfg.run_dir()} (output_dir is relative to "
                "the folder it was started from); run this command from that folder"
            )
        train(cfg, resume=True, require_checkpoint=True, allow_unsafe_pickle=args.allow_unsafe_pickle)
        return
    if args.config is None:
        raise PeftlabError("give a config YAML (e.g. configs/sql_demo/lora.yaml) or --resume RUN_DIR")
    cfg = load_config(args.config, args.set)
    check_remote_code(cfg.model, args.config)  # before the run folder is made
    train(
        cfg,
        overwrite=args.overwrite,
        resume=bool(args.resume),
        allow_unsafe_pickle=args.allow_unsafe_pickle,
    )


def _check(args) -> None:
    """Validate a config and its data without loading a model: what `train` would refuse, now."""
    from peftlab.config import load_config
    from peftlab.console import console
    from peftlab.models.loading import check_remote_code
    from peftlab.tasks.base import build_task

    cfg = load_config(args.config, args.set)
    check_remote_code(cfg.model, args.config)  # what train would refuse without --trust-remote-code
    task = build_task(cfg.task, log=console.print)
    sizes = ", ".join(f"{split} {len(examples)}" for split, examples in task.splits.items())
    console.print(
        f"{args.config}: valid. {cfg.method.name} on {cfg.model.name}, task {task.name} "
        f"({task.output_type}, primary metric {task.primary}); examples: {sizes}"
    )


def _eval(args) -> None:
    from peftlab.evaluation.evaluate import eval_run

    eval_run(
        Path(args.run_dir),
        split=args.split,
        limit_n=args.limit,
        num_beams=args.num_beams,
        allow_unsafe_pickle=args.allow_unsafe_pickle,
        overwrite=args.overwrite,
    )


def _generate(args) -> None:
    from peftlab.evaluation.evaluate import load_run
    from peftlab.tasks.base import build_task

    cfg, backbone = load_run(Path(args.run_dir), allow_unsafe_pickle=args.allow_unsafe_pickle)
    fmt = None if args.raw else build_task(cfg.task).format_input
    for text in args.text:
        prompt = fmt(text) if fmt else text
        print(
            backbone.generate(backbone.model, [prompt], max_new_tokens=args.max_new_tokens, num_beams=args.num_beams)[0]
        )


def _merge(args) -> None:
    from peftlab.evaluation.merge import merge_run

    merge_run(Path(args.run_dir), Path(args.out_dir))


def _demo(args) -> None:
    from peftlab.comparison.demo import run_demo

    run_demo(output_dir=Path(args.output_dir), steps=args.steps, overwrite=args.overwrite, lr_search=args.lr_search)


def _score(args) -> None:
    import json

    from peftlab.evaluation.score import score_csv

    scores = score_csv(Path(args.predictions), args.metric)
    if args.json:
        print(json.dumps(scores))
    else:
        for key, value in scores.items():
            print(f"{key}={value:.4f}")


def _report(args) -> None:
    from peftlab.console import console
    from peftlab.report import build_report, print_report

    report = build_report(Path(args.dir), args.examples)
    path = report.write()
    print_report(report)
    console.print(f"report: {path}")
    print(path)  # on stdout alone, for scripts: open "$(peftlab report runs/x)"


def _example_indices(text: str) -> list[int]:
    try:
        indices = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        indices = None
    if indices is None or any(i < 0 for i in indices):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated test-example indices (whole numbers >= 0) such as 0,42,7; got {text!r}"
        )
    return indices


def _tasks(args) -> None:
    from rich.markup import escape

    from peftlab.console import console
    from peftlab.tasks.catalog import catalog

    # One block per task: where its data comes from, and how it is scored.
    for name, t in catalog().items():
        metrics = ", ".join([t.get("metric", "rouge"), *t.get("extra_metrics", [])])
        console.print(f"[bold cyan]{name}[/bold cyan]  {escape(t.get('description', ''))}")
        hub = f"{t['hub']}" + (f" ({t['hub_config']})" if t.get("hub_config") else "") if t.get("hub") else "local only"
        files = ", ".join(f"{k}: {v}" for k, v in (t.get("local_files") or {}).items())
        console.print(f"  hub: {escape(hub)}   data_dir files: {escape(files)}")
        console.print(f"  output: {t.get('output_type', 'generate')}   metrics: {metrics}")
    console.print(
        "\nUse one with  task: {name: NAME, data_dir: FOLDER}  (or without data_dir, online, from the hub). "
        "sql_demo is built in and needs no data."
    )


def _methods(args) -> None:
    from rich.markup import escape

    from peftlab.console import console
    from peftlab.methods import REGISTRY

    # One block per method (a table squeezes the option descriptions into unreadable columns).
    for m in REGISTRY.values():
        hooks = ", ".join(h.value for h in m.hooks)
        lr = f"{m.default_lr:g}" + (" (depends on the options, see below)" if m.default_lr_for else "")
        console.print(f"[bold cyan]{m.name}[/bold cyan]  hooks: {hooks}   default lr: {lr}")
        console.print(f"  [dim]{escape(m.paper)}[/dim]")
        for key, field in m.config_cls.model_fields.items():
            default = "required" if field.is_required() else repr(field.default)
            console.print(f"  [green]{key}[/green] = {escape(default)}: {escape(field.description or '')}")
        console.print()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peftlab",
        description="Fine-tune language models with full fine-tuning, LoRA and other PEFT methods, and compare "
        "them honestly: quality by free generation, trainable parameters, adapter bytes, time and memory.",
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for add in (
        _training_commands,
        _use_commands,
        _merge_and_demo_commands,
        _listing_commands,
        _attribute_command,
        _inspect_commands,
    ):
        add(sub)
    return p


def _training_commands(sub) -> None:
    """Train, check and compare: training runs and grids of them."""
    t = sub.add_parser(
        "train",
        help="train one run from a YAML config",
        epilog=EPILOG,
        description="Train one method on one task and write a run folder "
        "(config.yaml, metrics.jsonl, summary.json, predictions.csv, adapter/).",
    )
    t.add_argument("config", nargs="?", help="experiment YAML, e.g. configs/sql_demo/lora.yaml")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=1e-4 --set method.rank=8 (repeatable)",
    )
    t.add_argument("--overwrite", action="store_true", help="replace an existing finished run folder")
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint: --resume RUN_DIR, or with a config, "
        "--resume alone (its run folder, if it holds a checkpoint of the same config)",
    )
    t.add_argument(
        "--allow-unsafe-pickle",
        action="store_true",
        help="let a model or adapter load from pickle files (.bin/.pt/.pth/.ckpt): only for files you trust, "
        "pickle can run code",
    )
    _remote_code_flag(t)
    t.set_defaults(func=_train)

    ck = sub.add_parser(
        "check", help="validate a config and its data without training (no model is loaded)", epilog=EPILOG
    )
    ck.add_argument("config", help="experiment YAML")
    ck.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    ck.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="check as `train --trust-remote-code` would (accept model.trust_remote_code: true); nothing runs",
    )
    ck.set_defaults(func=_check)

    compare_command(sub, EPILOG)


def _use_commands(sub) -> None:
    """Eval and generate: using trained runs."""
    e = sub.add_parser(
        "eval",
        help="score a finished run on a split by free generation",
        description="Load the base model and the run's adapter, generate for a split and score it; "
        "writes predictions_<split>.csv and eval_<split>.json into the run folder. An earlier result there "
        "is kept: eval stops unless --overwrite is given.",
    )
    e.add_argument("run_dir", help="a run folder written by `peftlab train`")
    e.add_argument(
        "--split", default="test", choices=["train", "validation", "test"], help="split to score (default: test)"
    )
    e.add_argument("--limit", type=int_in(1), default=None, metavar="N", help="score only the first N (>= 1) examples")
    e.add_argument(
        "--allow-unsafe-pickle", action="store_true", help="allow a pickle-only model or adapter (trusted files only)"
    )
    e.add_argument(
        "--num-beams",
        type=int_in(1, MAX_BEAMS),
        default=None,
        help=f"beam search width, 1..{MAX_BEAMS} (default: the run's eval.num_beams, 1 = greedy); writes *_beamN files",
    )
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier eval_<split>.json / predictions_<split>.csv (without it, eval refuses to)",
    )
    _remote_code_flag(e)
    e.set_defaults(func=_eval)

    g = sub.add_parser(
        "generate",
        help="generate with a trained run for your own input",
        description="Load a run's model and print its greedy answer for each TEXT. TEXT is put "
        "into the task's prompt template (e.g. a question for sql_demo, a dialogue for DialogSum) and "
        "the model's chat template, exactly as in training; --raw skips the task template.",
    )
    g.add_argument("run_dir", help="a run folder written by `peftlab train`")
    g.add_argument("text", nargs="+", help="input text(s), e.g. the task prompt")
    g.add_argument("--max-new-tokens", type=int_in(1, 4096), default=64, help="generation cap, 1..4096 (default: 64)")
    g.add_argument("--raw", action="store_true", help="use TEXT as the whole prompt (no task template)")
    g.add_argument(
        "--allow-unsafe-pickle", action="store_true", help="allow a pickle-only model or adapter (trusted files only)"
    )
    g.add_argument(
        "--num-beams",
        type=int_in(1, MAX_BEAMS),
        default=1,
        help=f"beam search width, 1..{MAX_BEAMS} (default: 1 = greedy)",
    )
    _remote_code_flag(g)
    g.set_defaults(func=_generate)


def _merge_and_demo_commands(sub) -> None:
    """Merge and demo: a merged model folder, and the main job on the embedded default."""
    mg = sub.add_parser(
        "merge",
        help="fold a LoRA or IA3 run's adapter into the base weights (plain model folder)",
        description="Load RUN_DIR's base model and adapter, merge the adapter into the weights "
        "(peft merge_and_unload, float32 on CPU) and save a plain transformers model (safetensors, "
        "config, tokenizer) into OUT_DIR, loadable without peft. Only LoRA, IA3 and peft-type runs whose "
        "update is a weight change (LoHa, LoKr, VeRA, OFT, BOFT, FourierFT, LN tuning, AdaLoRA) can be merged.",
    )
    mg.add_argument("run_dir", metavar="RUN_DIR", help="a finished LoRA or IA3 run folder written by `peftlab train`")
    mg.add_argument("out_dir", metavar="OUT_DIR", help="new or empty folder for the merged model")
    _remote_code_flag(mg)
    mg.set_defaults(func=_merge)

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
    d.set_defaults(func=_demo)


def _listing_commands(sub) -> None:
    """Tasks, methods, score and report: what is available, and results."""
    tk = sub.add_parser("tasks", help="list the packaged tasks: data source, output type and metrics")
    tk.set_defaults(func=_tasks)

    m = sub.add_parser("methods", help="list fine-tuning methods with their options and default learning rates")
    m.set_defaults(func=_methods)

    from peftlab.tasks.metrics import METRICS

    sc = sub.add_parser(
        "score",
        help="score a predictions.csv with a text metric (no model needed)",
        epilog=EPILOG,
        description="Read PREDICTIONS.csv (columns id,input,reference,prediction, as written by "
        "`peftlab train` or `peftlab eval`; several references in one cell joined with ' ||| ') and "
        "print the scores in [0, 1]: rouge (rouge1/2/L/Lsum F1, best reference per example), "
        "bleu (corpus BLEU-1..4, sacrebleu), exact_match (normalised text), accuracy (exact label "
        "match after strip, plus macro-F1 over the reference labels).",
    )
    sc.add_argument("predictions", metavar="PREDICTIONS.csv", help="a predictions CSV, e.g. runs/x/predictions.csv")
    sc.add_argument("--metric", required=True, choices=list(METRICS), help="which metric to compute")
    sc.add_argument("--json", action="store_true", help="print one JSON object instead of key=value lines")
    sc.set_defaults(func=_score)

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
        type=_example_indices,
        default=None,
        metavar="I,J,...",
        help="test-example indices (rows of predictions.csv) to show side by side "
        "(default: 0,1,42,123,250, those that exist)",
    )
    rp.set_defaults(func=_report)


def _quiet_libraries() -> None:
    """Keep the terminal for peftlab's own progress bars: no per-load bars or upstream deprecation notes."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def _permissions(args) -> contextlib.AbstractContextManager:
    """What the command line allows for this command: --trust-remote-code is a permission that every
    model load checks (models/loading.py); a config only asks for it."""
    if not getattr(args, "trust_remote_code", False):
        return contextlib.nullcontext()
    from peftlab.models.loading import remote_code_allowed  # pulls in torch: only when a model will load

    return remote_code_allowed()


def main(argv: list[str] | None = None) -> int:
    from peftlab.versions import warn_if_untested

    args = build_parser().parse_args(argv)
    warn_if_untested()  # one line when torch / transformers / peft are not the tested releases
    _quiet_libraries()
    try:
        with _permissions(args):
            args.func(args)
    except PeftlabError as e:
        print(f"peftlab: error: {e}", file=sys.stderr)
        return e.exit_code  # runlock.RunLocked: 75, the run is being trained elsewhere
    except KeyboardInterrupt:
        print("peftlab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
