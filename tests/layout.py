"""The README's Layout section against the source tree: which packages and modules each names.

The Layout is a tree in a code block: one entry a line, indented two spaces per level under its
package, a package written with a trailing slash, then a description. For example::

    src/peftlab/
      config.py       typed configs
      cli/            the `peftlab` command
        entry.py      the parser; runs a subcommand

Run ``python -m tests.layout`` to print the entries the Layout lacks, each with its module's
docstring as a draft description.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SRC = ROOT / "src" / "peftlab"
TREE_ROOT = "src/peftlab/"


def tree_paths() -> set[str]:
    """Every package (``cli/``) and module (``cli/entry.py``) under src/peftlab; a package's
    __init__.py is the package's own entry."""
    paths = set()
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if path.name == "__init__.py":
            if rel.parent != Path("."):
                paths.add(f"{rel.parent.as_posix()}/")
        else:
            paths.add(rel.as_posix())
    return paths


def layout_block(readme: str) -> list[str]:
    """The lines of the first code block after the "## Layout" heading."""
    section = readme.split("\n## Layout", 1)[1]
    block = re.search(r"```[^\n]*\n(.*?)```", section, re.S)
    assert block, "README.md's Layout section has no code block"
    return block.group(1).splitlines()


def layout_paths(readme: str) -> set[str]:
    """The packages and modules the Layout names under src/peftlab/, as paths relative to it."""
    paths: set[str] = set()
    parents: list[str] = []  # the package path at each indentation level below src/peftlab/
    inside = False
    for line in layout_block(readme):
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        if depth == 0:
            inside = name == TREE_ROOT
            continue
        if not inside:
            continue
        del parents[depth - 1 :]
        path = "".join(parents) + name
        paths.add(path)
        if name.endswith("/"):
            parents.append(name)
    return paths


def docstring_line(rel: str) -> str:
    path = SRC / rel / "__init__.py" if rel.endswith("/") else SRC / rel
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


if __name__ == "__main__":
    missing = sorted(tree_paths() - layout_paths(README.read_text(encoding="utf-8")))
    for rel in missing:
        print(f"{rel:<28} {docstring_line(rel)}")
    if not missing:
        print("README.md's Layout lists every package and module of src/peftlab.")
