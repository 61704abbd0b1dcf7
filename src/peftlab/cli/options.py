"""argparse types, limits and flags that several subcommands share (the *_commands.py modules)."""

from __future__ import annotations

import argparse

# Upper bound of --num-beams, the same as the config's eval.num_beams (config.py), written out here so that
# `peftlab --help` does not import the config.
MAX_BEAMS = 64  # beams multiply the generation batch: a width in the thousands only runs out of memory

EPILOG = "Docs: README.md. Every config key is documented in src/peftlab/config.py (and `peftlab methods`)."


def int_in(low: int, high: int | None = None):
    """An argparse type: a whole number in [low, high]. Out of range is an argparse error naming the flag
    and the range (exit 2): `--limit 0` would score nothing, `--limit -1` all but one example, silently."""
    allowed = f"a whole number >= {low}" if high is None else f"a whole number from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value

    parse.__name__ = allowed  # what argparse shows if it ever names the type
    return parse


REMOTE_CODE_HELP = (
    "allow the Python shipped in a model folder to run, for a config that asks for it "
    "(model.trust_remote_code: true); both are needed: the flag alone turns nothing on, and the key "
    "alone is refused. Only for a model whose code you have read or trust"
)


def remote_code_flag(parser) -> None:
    parser.add_argument("--trust-remote-code", action="store_true", help=REMOTE_CODE_HELP)
