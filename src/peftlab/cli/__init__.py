"""The ``peftlab`` command: entry builds the parser and runs a subcommand. Each subcommand has a function
that adds its parser and one that runs it, grouped by kind: run_commands (train, check), compare_commands
(compare, demo, report), finished_commands (eval, generate, merge, score), catalog_commands (tasks,
methods), inspect_commands (attribute, data, params); options holds the argument types and flags they share.
"""

from peftlab.cli.entry import main

__all__ = ["main"]
