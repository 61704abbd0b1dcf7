"""Shared fixtures: tiny models and a tiny task written to disk (no hub, fast on 2 cores)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from peftlab.methods import register
from tests.methods import toy_method

# CI replays the same generated cases every run (a failure there is reproducible); locally each run
# explores new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Under pytest-xdist (make test runs two workers) each worker, and every process a test starts,
# computes on one thread: two workers of two threads each on a 2-core machine would spin against
# each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# train.precision auto is bf16 on CPUs with native bf16 (AVX512-BF16, AMX) and fp32 elsewhere: the
# suite pins fp32 so that every machine, CI included, runs the numerics its exactness checks were
# written for. Set here, at import, so that it reaches every process a test starts, also through an
# environment a test module copies at its own import. The bf16 path is tested explicitly
# (tests/test_precision.py, tests/test_frozen_bf16.py), on every CPU.
os.environ["PEFTLAB_CPU_BF16"] = "0"

# A toy method registered like any other: the tests that run over the registry pick it up.
register(toy_method.METHOD)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ARCHS = ("tiny-t5", "tiny-gpt-neo", "tiny-llama")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_version_warning(monkeypatch):
    # The suite also runs against the newest releases (make test-newest), where every command would
    # warn; tests/test_versions.py checks the warning itself.
    monkeypatch.setenv("PEFTLAB_NO_VERSION_WARNING", "1")


@pytest.fixture
def copy_task(tmp_path: Path) -> dict:
    """A task the tiny models can learn quickly: copy a short word. Returns a task config dict."""
    words = [
        "apple",
        "river",
        "stone",
        "cloud",
        "maple",
        "tiger",
        "ocean",
        "piano",
        "lemon",
        "amber",
        "cedar",
        "delta",
        "eagle",
        "flint",
        "grape",
        "honey",
    ]
    for split, part in (("train", words[:12]), ("validation", words[12:14]), ("test", words[14:])):
        with (tmp_path / f"{split}.jsonl").open("w") as f:
            for i, w in enumerate(part):
                f.write(json.dumps({"uid": f"{split}-{i}", "word": w, "answer": w}) + "\n")
    return {
        "name": "copy",
        "data_files": {s: str(tmp_path / f"{s}.jsonl") for s in ("train", "validation", "test")},
        "input_template": "Repeat: {word}",
        "target_field": "answer",
        "id_field": "uid",
        "metric": "exact_match",
        "max_new_tokens": 8,
    }


def fixed_batch(backbone, n: int = 4) -> dict:
    pairs = [("Repeat: cat", "cat"), ("Repeat: dog", "dog"), ("Repeat: owl", "owl"), ("Repeat: bee", "bee")]
    return backbone.collate([backbone.encode(p, t) for p, t in pairs[:n]])
