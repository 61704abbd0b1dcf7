"""argparse types shared by the subcommands (cli.py, cli_compare.py)."""

from __future__ import annotations

import argparse


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
