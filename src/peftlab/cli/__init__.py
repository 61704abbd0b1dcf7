"""The ``peftlab`` command: entry builds the parser and runs a subcommand; compare_commands and
inspect_commands hold the subcommands of a comparison and of looking inside runs; options holds the
argument types and flags they share.
"""

from peftlab.cli.entry import main

__all__ = ["main"]
