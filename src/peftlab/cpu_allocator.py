"""glibc malloc's mmap threshold held fixed, so that a freed activation goes back to the system.

torch's CPU tensors come from malloc. glibc serves a block above its mmap threshold (128 KiB at
start) with its own mmap, and unmaps it on free. But each time such a block is freed, glibc raises
the threshold to that block's size (its "dynamic mmap threshold", up to 32 MiB on 64-bit), so after
the first freed activation, every later tensor of that size is carved from the heap instead. Freed
heap memory stays resident and fragments between steps of different shapes, and the process's RSS,
which is what peftlab's CPU peak memory reads (measure/cost.py), then measures the allocator's
leftovers as much as the method's activations: on SmolLM2-135M, LoRA, batch 8 x 488 in fp32, the
high-water mark was 8.5 GB with the default and 5.3 GB with the threshold held (bench/RESULTS.md,
bench/memory_profile.py), and it moved between identical runs.

Setting the threshold (mallopt M_MMAP_THRESHOLD, the same as the MALLOC_MMAP_THRESHOLD_ environment
variable) turns the dynamic adjustment off. Allocation places memory, not values: results are the
same bits (tests/test_memory_options.py). It is the option train.release_memory, not the default:
a mapped block's pages are faulted in and zeroed afresh at every allocation, and the same steps took
about 40% longer (50 s against 72 s for six steps, bench/RESULTS.md). Where the variable is set
already, or the C library is not glibc, nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
THRESHOLD_BYTES = 1 << 20  # blocks of 1 MiB and more are mapped: activations, not small bookkeeping


def hold_mmap_threshold(threshold: int = THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; whether it was set."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False  # the user's own setting, read by glibc at start, stays
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1
