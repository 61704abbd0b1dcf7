"""Command line: the parser of every subcommand, and main(), which runs the one given.

Each subcommand has a function that adds its parser (add_<name>) and one that runs it (do_<name>), in
the *_commands.py module of its kind. User mistakes (PeftlabError) print a message and exit with code
2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from peftlab.cli.catalog_commands import add_methods, add_tasks
from peftlab.cli.compare_commands import add_compare, add_demo, add_report
from peftlab.cli.finished_commands import add_eval, add_export, add_generate, add_merge, add_score
from peftlab.cli.inspect_commands import add_attribute, add_data, add_params
from peftlab.cli.options import EPILOG
from peftlab.cli.run_commands import add_check, add_train
from peftlab.errors import PeftlabError

# The subcommands in the order `peftlab --help` lists them (kept from before they had one function each):
# training (train, check, compare), finished runs (eval, generate, merge), the demo, what is available
# (tasks, methods), results (score, report), and looking inside (attribute, data, params).
SUBCOMMANDS = (
    add_train,
    add_check,
    add_compare,
    add_eval,
    add_generate,
    add_merge,
    add_export,
    add_demo,
    add_tasks,
    add_methods,
    add_score,
    add_report,
    add_attribute,
    add_data,
    add_params,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peftlab",
        description="Fine-tune language models with full fine-tuning, LoRA and other PEFT methods, and compare "
        "them honestly: quality by free generation, trainable parameters, adapter bytes, time and memory.",
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return p


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
