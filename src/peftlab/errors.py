"""One error type for everything a user can get wrong; the CLI turns it into a message and exit code 2."""

from __future__ import annotations

import difflib


class PeftlabError(Exception):
    """A problem with the user's input (config, data, paths, model names), explained in words."""

    exit_code = 2


def suggest(name: str, allowed: list[str] | tuple[str, ...]) -> str:
    """' (did you mean 'x'?)' when a close valid name exists, so typos get a fix, not a puzzle."""
    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
