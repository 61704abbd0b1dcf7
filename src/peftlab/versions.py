"""The tested dependency set, and a guard that says when the installed one differs.

requirements.lock (at the repository root) holds every package version the whole test suite passed
with; `make setup` installs it. TESTED below repeats the three releases that change results most
(a transformers release once silently broke prompt- and prefix-tuned generation), so an installed
peftlab knows them without the repository; `make upgrade` rewrites both, and
tests/test_versions.py checks that they agree.

    python -m peftlab.versions                      # installed vs tested, one line per package
    python -m peftlab.versions --diff-lock FILE     # what the running environment changes against a lock
    python -m peftlab.versions --write-lock FILE    # the running environment as a lock (make upgrade)
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

# Written by `make upgrade` from requirements.lock.
TESTED = {"torch": "2.13.0", "transformers": "5.23.0", "peft": "0.21.2"}
QUIET = "PEFTLAB_NO_VERSION_WARNING"  # set to 1 to silence the warning (the test suite sets it)


def installed(package: str) -> str | None:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


def release(version: str | None) -> str | None:
    """The release without a local build label: '2.13.0+cpu' -> '2.13.0' (the same release, CPU build)."""
    return version.split("+", 1)[0] if version else version


def untested() -> dict[str, tuple[str | None, str]]:
    """{package: (installed, tested)} for each guarded package whose installed release is not the tested one."""
    found = {pkg: installed(pkg) for pkg in TESTED}
    return {pkg: (found[pkg], want) for pkg, want in TESTED.items() if release(found[pkg]) != want}


def warning() -> str | None:
    """One line naming the installed and tested versions, or None when they are the tested ones."""
    diff = untested()
    if not diff:
        return None
    got = ", ".join(f"{pkg} {have or 'missing'}" for pkg, (have, _) in diff.items())
    want = ", ".join(f"{pkg} {v}" for pkg, v in TESTED.items())
    return (
        f"peftlab: warning: installed {got}; peftlab was tested with {want}. Results may differ "
        "(`make setup` installs the tested set from requirements.lock)"
    )


def warn_if_untested(stream=None) -> bool:
    """Print the warning (once per command) unless PEFTLAB_NO_VERSION_WARNING is set; True when printed."""
    line = warning()
    if line is None or os.environ.get(QUIET):
        return False
    print(line, file=stream or sys.stderr)
    return True


def lock_lines(freeze: list[str]) -> list[str]:
    """pip freeze output as a constraints file: exact releases, no editable installs, no local labels
    (torch==2.13.0, not 2.13.0+cpu: the same lock then serves CPU and CUDA builds)."""
    lines = []
    for line in freeze:
        line = line.strip()
        if not line or line.startswith(("#", "-e", "-")) or " @ " in line or "==" not in line:
            continue
        name, version = line.split("==", 1)
        if name.lower() == "peftlab":
            continue
        lines.append(f"{name}=={release(version)}")
    return sorted(lines, key=str.lower)


def read_lock(path: Path) -> dict[str, str]:
    """{normalised package name: version} of a lock file."""
    pins = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "==" not in line:
            raise ValueError(f"{path}:{n}: expected NAME==VERSION, got {line!r}")
        name, version = line.split("==", 1)
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def frozen() -> list[str]:
    """The running environment as lock lines."""
    return lock_lines(
        subprocess.run(
            [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True, capture_output=True, text=True
        ).stdout.splitlines()
    )


def lock_changes(lock: dict[str, str], lines: list[str]) -> list[str]:
    """'name: old -> new' for each package whose release differs from the lock's (or is new)."""
    changes = []
    for line in lines:
        name, version = line.split("==", 1)
        old = lock.get(re.sub(r"[-_.]+", "-", name).lower())
        if old != version:
            changes.append(f"{name}: {old or '(new)'} -> {version}")
    return changes


def write_lock(path: Path) -> None:
    """Write the running environment as the lock, and TESTED in this file to match it."""
    header = [
        "# The exact releases the whole test suite passed with (`make upgrade` rewrites this file).",
        "# `make setup` installs them as constraints; pyproject.toml keeps the ranges for other installs.",
    ]
    path.write_text("\n".join(header + frozen()) + "\n")
    pins = read_lock(path)
    tested = {pkg: pins[pkg] for pkg in TESTED}
    source = Path(__file__)
    text = re.sub(
        r"^TESTED = \{.*\}$", f"TESTED = {tested!r}".replace("'", '"'), source.read_text(), count=1, flags=re.M
    )
    source.write_text(text)
    print(f"wrote {path} ({len(pins)} packages) and TESTED in {source}: {tested}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m peftlab.versions", description=__doc__.split("\n\n")[0])
    p.add_argument("--write-lock", metavar="FILE", type=Path, help="write the running environment as the lock")
    p.add_argument("--diff-lock", metavar="FILE", type=Path, help="list the releases that differ from this lock")
    args = p.parse_args(argv)
    if args.diff_lock:
        changes = lock_changes(read_lock(args.diff_lock), frozen())
        print("\n".join(f"  {c}" for c in changes) or "  nothing")
        return 0
    if args.write_lock:
        write_lock(args.write_lock)
        return 0
    for pkg in ("python", *TESTED, "accelerate", "datasets", "tokenizers", "safetensors"):
        have = sys.version.split()[0] if pkg == "python" else installed(pkg)
        want = TESTED.get(pkg)
        mark = "" if want is None else ("  (tested)" if release(have) == want else f"  (tested: {want})")
        print(f"{pkg:14s} {have}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
