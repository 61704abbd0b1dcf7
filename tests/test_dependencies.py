"""Every package peftlab imports when a module loads is installed by `pip install peftlab` itself.

`make test` installs the test extras (lm-eval, ray, ...), which bring packages of their own, so a
module-level import of one of those passes every test and fails on a user's machine: `make demo` on a
fresh clone once stopped at `from scipy.stats import rankdata` (the report's cross-model ranks) because
scipy came only with the test extras. Here each module's top-level imports (not those inside functions,
which only run where the feature is used) are matched to their installed distributions, and each must
be one of peftlab's runtime requirements or required by one, markers of extras left out.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys

from packaging.requirements import Requirement

from tests.layout import SRC

# Modules loaded only by the feature whose extra installs the package (each imports it at the top).
EXTRA_MODULES = {
    "ray": "comparison/launch/ray_tasks.py",  # compare --launcher ray: peftlab[ray]
    "submitit": "comparison/launch/slurm.py",  # compare --launcher slurm: peftlab[slurm]
}


def _key(name: str) -> str:
    return name.lower().replace("_", "-")


def runtime_closure(dist: str = "peftlab") -> set[str]:
    """The distributions ``pip install dist`` installs: its requirements without extras, recursively."""
    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = todo.pop()
        if _key(name) in seen:
            continue
        seen.add(_key(name))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def top_level_imports() -> dict[str, set[str]]:
    """Third-party top-level package -> the modules (relative to the package) importing it as they load."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root not in sys.stdlib_module_names and root != "peftlab":
                    found.setdefault(root, set()).add(path.relative_to(SRC).as_posix())
    return found


def test_every_module_level_import_comes_with_peftlab_s_own_requirements():
    installed = runtime_closure()
    assert {"torch", "transformers", "peft", "numpy"} <= installed  # the walk reaches what it must
    owners = md.packages_distributions()
    missing = []
    for root, modules in top_level_imports().items():
        if root in EXTRA_MODULES and modules == {EXTRA_MODULES[root]}:
            continue
        if not any(_key(d) in installed for d in owners.get(root, [root])):
            missing.append(f"{root} (imported at the top of {', '.join(sorted(modules))})")
    assert not missing, "not installed by `pip install peftlab`: " + "; ".join(missing)


def test_the_check_sees_a_package_only_the_test_extras_install():
    assert "pytest" not in runtime_closure()
    assert "lm-eval" not in runtime_closure()
