"""cpu_allocator: with glibc's mmap threshold held, freed activations leave the process's RSS."""

import json
import os
import subprocess
import sys

import pytest

from peftlab.cpu_allocator import hold_mmap_threshold

# Frees one 20 MiB tensor (which raises glibc's dynamic threshold to 20 MiB), then makes eight 16 MiB
# tensors, each followed by a small one (8 KiB) that stays (as a step's bookkeeping does), and frees the big
# ones: from the heap they stay resident behind the small ones; mapped, they go back.
CHILD = """
import json, sys, psutil, torch
from peftlab.cpu_allocator import hold_mmap_threshold
held = hold_mmap_threshold() if sys.argv[1] == "held" else False
rss = lambda: psutil.Process().memory_info().rss
x = torch.ones(5 << 20); del x
before, big, pins = rss(), [], []
for _ in range(8):
    big.append(torch.ones(4 << 20)); pins.append(torch.ones(2048))
big.clear()
print(json.dumps({"held": held, "kept_mb": (rss() - before) / 2**20}))
"""


def kept_after_free(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_freed_tensors_leave_the_rss_only_with_the_threshold_held():
    default, held = kept_after_free("default"), kept_after_free("held")
    assert held["held"] and not default["held"]
    assert default["kept_mb"] > 100  # 128 MiB freed, still resident
    assert held["kept_mb"] < 16


def test_a_threshold_the_user_set_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert hold_mmap_threshold() is False
