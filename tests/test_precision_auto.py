"""train.precision auto: bf16 where the hardware computes bf16 natively (every GPU, CPUs with
AVX512-BF16 or AMX), fp32 elsewhere; detected from the CPU, recorded per run, and a comparison that
mixes numerics says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from peftlab.errors import PeftlabError
from peftlab.measure import precision
from peftlab.measure.precision import compute_dtype, cpu_has_bf16
from peftlab.report.aggregate import compare_runs
from peftlab.report.costs import cost_notes
from peftlab.report.runs import load_runs
from peftlab.rundir.summary import RunSummary
from peftlab.training.train import train
from tests.report.fakes import fake_run
from tests.test_precision import record_linear_dtypes
from tests.test_train import make_config


@pytest.mark.parametrize(("flag", "expected"), [("1", torch.bfloat16), ("0", None)])
def test_auto_on_cpu_follows_the_cpus_bf16_support(monkeypatch, flag, expected):
    monkeypatch.setenv(precision.ENV_CPU_BF16, flag)
    assert compute_dtype("auto", "cpu") is expected
    assert compute_dtype("auto", "cuda") is torch.bfloat16  # every GPU peftlab runs on computes bf16
    assert compute_dtype("fp32", "cpu") is None and compute_dtype("bf16", "cpu") is torch.bfloat16


def test_detection_agrees_with_the_flags_the_kernel_reports(monkeypatch):
    monkeypatch.delenv(precision.ENV_CPU_BF16)
    flags = Path("/proc/cpuinfo").read_text().split()  # CI and every machine of this project run Linux
    assert cpu_has_bf16() == any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    precision._cpu_reports_bf16.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", None)  # a torch without the probe
    try:
        assert cpu_has_bf16() == any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    finally:
        precision._cpu_reports_bf16.cache_clear()


def test_a_bad_override_names_the_variable_and_what_is_allowed(monkeypatch):
    monkeypatch.setenv(precision.ENV_CPU_BF16, "yes")
    with pytest.raises(PeftlabError, match="PEFTLAB_CPU_BF16 must be 0 or 1.*'yes'"):
        compute_dtype("auto", "cpu")


@pytest.mark.parametrize(
    ("flag", "dtype", "name"), [("1", torch.bfloat16, "bfloat16"), ("0", torch.float32, "float32")]
)
def test_a_run_computes_and_records_what_auto_resolved_to(tmp_path, copy_task, monkeypatch, flag, dtype, name):
    monkeypatch.setenv(precision.ENV_CPU_BF16, flag)
    recorders = record_linear_dtypes(monkeypatch)
    run_dir = train(make_config(tmp_path, copy_task, "tiny-gpt-neo", max_steps=2, eval_every=None))
    (seen,) = [r.seen for r in recorders]
    assert seen == {"train": {dtype}, "eval": {dtype}}
    assert RunSummary.read(run_dir / "summary.json").compute_dtype == name


def test_a_comparison_that_mixes_numerics_says_which_run_computed_in_what(tmp_path):
    scores = [1.0] * 40 + [0.0] * 24
    for name, method, dtype in [("lora-s0", "lora", "bfloat16"), ("full-s0", "full", "float32")]:
        d = fake_run(tmp_path, name, label=method, method=method, seed=0, example_scores=scores, trainable=10)
        summary = json.loads((d / "summary.json").read_text())
        (d / "summary.json").write_text(json.dumps({**summary, "compute_dtype": dtype}))
    (comp,) = compare_runs(load_runs(tmp_path))
    (note,) = [n for n in cost_notes(comp) if "dtypes" in n]
    assert "bfloat16: lora-s0; float32: full-s0" in note
    for d in ("lora-s0", "full-s0"):  # one numerics: no note
        summary = json.loads((tmp_path / d / "summary.json").read_text())
        (tmp_path / d / "summary.json").write_text(json.dumps({**summary, "compute_dtype": "bfloat16"}))
    (comp,) = compare_runs(load_runs(tmp_path))
    assert not [n for n in cost_notes(comp) if "dtypes" in n]
