"""Peak memory: the training peak (optimizer steps) is the method's cost, kept apart from the whole
run's peak, which also holds peftlab's bookkeeping (best-weights copy, checkpoints, evaluation)."""

from __future__ import annotations

import json
import time

import torch

from peftlab.measure.cost import PeakMemory
from peftlab.training.train import train
from tests.test_train import make_config

MB = 10**6


def test_memory_outside_the_optimizer_steps_is_not_training_memory():
    with PeakMemory(interval=0.005) as memory:
        bookkeeping = torch.ones(100 * MB // 4)  # 100 MB held outside any step, as a best-weights copy is
        time.sleep(0.05)
        del bookkeeping
        with memory.step():
            step = torch.ones(20 * MB // 4)
            time.sleep(0.05)
            del step
    assert memory.train_peak > 0
    assert memory.peak - memory.train_peak > 60 * MB, (memory.peak, memory.train_peak)


def test_a_step_is_training_memory():
    with PeakMemory(interval=0.005) as memory:
        before = memory.peak
        with memory.step():
            held = torch.ones(80 * MB // 4)
            time.sleep(0.05)
        del held
    assert memory.train_peak - before > 60 * MB


def test_the_summary_has_the_training_peak_and_the_whole_runs(tmp_path, copy_task):
    run_dir = train(make_config(tmp_path, copy_task, "tiny-gpt-neo", max_steps=4, eval_every=2))
    s = json.loads((run_dir / "summary.json").read_text())
    assert 0 < s["peak_memory_bytes"] <= s["run_peak_memory_bytes"]


def test_zero_shot_records_the_memory_of_the_loaded_model(tmp_path, copy_task):
    run_dir = train(make_config(tmp_path, copy_task, "tiny-gpt-neo", {"name": "none"}))
    s = json.loads((run_dir / "summary.json").read_text())
    assert 0 < s["peak_memory_bytes"] <= s["run_peak_memory_bytes"]
