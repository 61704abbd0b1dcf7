"""`peftlab train` and `peftlab check`: one run from a config, or the config checked without training.
Imports stay inside the functions that run the commands, so `peftlab --help` stays fast."""

from __future__ import annotations

from pathlib import Path

from peftlab.cli.options import EPILOG, remote_code_flag
from peftlab.errors import PeftlabError
from peftlab.methods.registry import refuse_misfit_before_loading


def add_train(sub) -> None:
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
    remote_code_flag(t)
    t.set_defaults(func=do_train)


def do_train(args) -> None:
    from peftlab.config import load_config
    from peftlab.models.loading import check_remote_code
    from peftlab.training.train import train

    if isinstance(args.resume, str):  # peftlab train --resume RUN_DIR: the run folder's own config
        _resume(Path(args.resume), args)
        return
    if args.config is None:
        raise PeftlabError("give a config YAML (e.g. configs/sql_demo/lora.yaml) or --resume RUN_DIR")
    cfg = load_config(args.config, args.set)
    check_remote_code(cfg.model, args.config)  # before the run folder is made
    refuse_misfit_before_loading(cfg.method.name, cfg.model)
    train(
        cfg,
        overwrite=args.overwrite,
        resume=bool(args.resume),
        allow_unsafe_pickle=args.allow_unsafe_pickle,
    )


def _resume(run_dir: Path, args) -> None:
    """`train --resume RUN_DIR`: the run continues under the config it was started with, from its folder."""
    from peftlab.config import load_config
    from peftlab.evaluation.evaluate import run_config_path
    from peftlab.models.loading import check_remote_code
    from peftlab.training.train import train

    if args.config is not None:
        raise PeftlabError("give either a config or --resume RUN_DIR, not both")
    if args.set:
        raise PeftlabError("--set cannot change a run that is resumed (its checkpoint belongs to its config)")
    cfg = load_config(run_config_path(run_dir))
    check_remote_code(cfg.model, run_config_path(run_dir))
    if cfg.run_dir().resolve() != run_dir.resolve():
        raise PeftlabError(
            f"{run_dir}: its config places the run at {cfg.run_dir()} (output_dir is relative to "
            "the folder it was started from); run this command from that folder"
        )
    train(cfg, resume=True, require_checkpoint=True, allow_unsafe_pickle=args.allow_unsafe_pickle)


def add_check(sub) -> None:
    ck = sub.add_parser(
        "check",
        help="validate a config and its data without training (no model is loaded)",
        epilog=EPILOG,
        description="Validate a run config, or a `peftlab compare` experiment file (one with methods:): "
        "every run config it expands to, as `compare --plan` does, without the probe.",
    )
    ck.add_argument("config", help="run config or experiment YAML")
    ck.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    ck.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="check as `train --trust-remote-code` would (accept model.trust_remote_code: true); nothing runs",
    )
    ck.set_defaults(func=do_check)


def do_check(args) -> None:
    """Validate a config and its data without loading a model: what `train` would refuse, now."""
    from peftlab.config import load_config
    from peftlab.console import console
    from peftlab.models.loading import check_remote_code
    from peftlab.tasks.base import build_task

    if is_experiment(Path(args.config)):
        check_experiment(args)
        return
    cfg = load_config(args.config, args.set)
    check_remote_code(cfg.model, args.config)  # what train would refuse without --trust-remote-code
    refuse_misfit_before_loading(cfg.method.name, cfg.model)
    task = build_task(cfg.task, log=console.print)
    sizes = ", ".join(f"{split} {len(examples)}" for split, examples in task.splits.items())
    console.print(
        f"{args.config}: valid. {cfg.method.name} on {cfg.model.name}, task {task.name} "
        f"({task.output_type}, primary metric {task.primary}); examples: {sizes}"
    )


def is_experiment(path: Path) -> bool:
    """A `peftlab compare` experiment file: a mapping with a methods list (a run config has one method:)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # load_config says what is wrong with it
    return isinstance(data, dict) and "methods" in data


def check_experiment(args) -> None:
    """`check` on an experiment file: compare's checks of every run it expands to (compare --plan's, no probe)."""
    from peftlab.comparison.plan import planned_runs, validate
    from peftlab.console import console

    if args.set:
        raise PeftlabError(f"{args.config}: --set changes a run config; edit the experiment file instead")
    checked = validate(Path(args.config))
    runs = planned_runs(checked)
    searched = sum(len(r.lrs or ()) for r in runs)
    labels = list(dict.fromkeys(r.label for r in runs))
    ((kind, amount),) = checked.cc.budget.items()
    console.print(
        f"{args.config}: valid experiment: {len(runs)} runs ({len(labels)} methods: {', '.join(labels)}; "
        f"seeds {', '.join(map(str, checked.cc.seeds))}), budget {amount:g} {kind}"
        + (f", lr search over {searched} values" if searched else ", no lr search")
        + f"; task {checked.configs[0].task.name} on {checked.cc.model.name}"
    )
