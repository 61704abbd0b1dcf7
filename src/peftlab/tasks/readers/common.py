"""What every reader shares: the reader's signature, the plain 'rows' reader and the check of a reader's
options.

Apart from the package's __init__, which lists the readers by name, so that each reader can import
this without importing that list (and so itself) back.
"""

from __future__ import annotations

from collections.abc import Callable

from peftlab.errors import PeftlabError

Reader = Callable[[dict[str, list[dict]], dict, str], dict[str, list[dict]]]


def rows(raw: dict[str, list[dict]], options: dict, where: str) -> dict[str, list[dict]]:
    if options:
        raise PeftlabError(f"{where}: task.reader_options {sorted(options)}: the 'rows' reader takes no options")
    if "all" in raw:
        raise PeftlabError(f"{where}: split 'all' needs a reader that splits it (e.g. reader: geoquery)")
    return raw


def check_options(options: dict, allowed: dict[str, tuple], where: str, reader: str) -> dict:
    """Options of a reader, validated: {name: (allowed values..)}; errors say what is allowed."""
    for key, value in options.items():
        if key not in allowed:
            raise PeftlabError(
                f"{where}: task.reader_options.{key}: unknown option of reader '{reader}'; "
                f"allowed: {', '.join(allowed)}"
            )
        if value not in allowed[key]:
            raise PeftlabError(
                f"{where}: task.reader_options.{key}={value!r}: allowed: {', '.join(map(str, allowed[key]))}"
            )
    return options
