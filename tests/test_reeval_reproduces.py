"""`peftlab eval RUN --split test` reproduces summary.json's test score and predictions exactly: a run
is re-loaded as training held it (models/loading.py load_as_trained, shared by training and every
path that loads a finished run), in the same weights dtype under the same autocast."""

import csv
import json
from types import SimpleNamespace

import pytest
import torch
import yaml

from peftlab.cli import main
from peftlab.config import load_config
from peftlab.evaluation.evaluate import load_run
from peftlab.measure import precision
from peftlab.measure.precision import run_dtypes
from peftlab.training.summarize import frozen_bf16_params
from peftlab.training.train import train

METHODS = {
    "lora": {"name": "lora", "rank": 4, "dropout": 0.0},
    "dora": {"name": "lora", "rank": 4, "dropout": 0.0, "use_dora": True},
    "full": {"name": "full"},
}


def _train(tmp_path, copy_task, arch, dtype, method):
    cfg = {
        "name": f"reeval-{arch}-{dtype}-{method}",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": arch, "dtype": dtype},
        "method": METHODS[method],
        "task": copy_task,
        "train": {"max_steps": 3, "batch_size": 4, "lr": 1e-2, "eval_every": None, "precision": "bf16"},
        "eval": {"batch_size": 2},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return train(load_config(path))


def _predictions(path):
    return [r["prediction"] for r in csv.DictReader(path.open())]


@pytest.mark.parametrize(
    "arch,dtype,method",
    [
        ("tiny-llama", "auto", "lora"),
        ("tiny-llama", "bfloat16", "lora"),
        ("tiny-llama", "auto", "dora"),
        ("tiny-t5", "auto", "lora"),
        ("tiny-t5", "bfloat16", "lora"),
        ("tiny-llama", "bfloat16", "full"),
    ],
)
def test_eval_reproduces_summary(tmp_path, copy_task, arch, dtype, method):
    run_dir = _train(tmp_path, copy_task, arch, dtype, method)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert main(["eval", str(run_dir), "--split", "test", "--overwrite"]) == 0
    again = json.loads((run_dir / "eval_test.json").read_text())["scores"]
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in summary["test"].items() if k != "seconds"
    }
    assert _predictions(run_dir / "predictions_test.csv") == _predictions(run_dir / "predictions.csv")


def test_loaded_run_holds_weights_as_training(tmp_path, copy_task):
    """The re-loaded model: the run's weights dtype and compute dtype, frozen linears stored in bf16
    when training stored them (at least the frozen base training counted: a loaded adapter is frozen too)."""
    run_dir = _train(tmp_path, copy_task, "tiny-llama", "auto", "lora")
    summary = json.loads((run_dir / "summary.json").read_text())
    _, backbone = load_run(run_dir, device=torch.device("cpu"))
    assert backbone.compute_dtype == torch.bfloat16
    assert summary["frozen_bf16_params"] > 0
    assert frozen_bf16_params(backbone.model) >= summary["frozen_bf16_params"]
    norms = [p for n, p in backbone.model.named_parameters() if "norm" in n]
    assert norms and all(p.dtype == torch.float32 for p in norms)  # fp32 masters, not a bf16 model


@pytest.mark.parametrize(
    "device,model_dtype,train_precision,cpu_bf16,expected",
    [
        # model.dtype auto: fp32 masters everywhere (a GPU once loaded bf16 weights for re-evaluation)
        ("cuda", "auto", "auto", False, (torch.float32, torch.bfloat16)),
        ("cuda", "auto", "bf16", False, (torch.float32, torch.bfloat16)),
        ("cuda", "auto", "fp32", False, (torch.float32, None)),
        ("cpu", "auto", "auto", False, (torch.float32, None)),
        ("cpu", "auto", "auto", True, (torch.float32, torch.bfloat16)),
        ("cpu", "auto", "bf16", False, (torch.float32, torch.bfloat16)),
        # a named dtype is stored as named, on every device
        ("cuda", "bfloat16", "bf16", False, (torch.bfloat16, torch.bfloat16)),
        ("cpu", "bfloat16", "fp32", False, (torch.bfloat16, None)),
        ("cuda", "float32", "auto", False, (torch.float32, torch.bfloat16)),
        ("cpu", "float16", "fp32", False, (torch.float16, None)),
    ],
)
def test_run_dtypes(monkeypatch, device, model_dtype, train_precision, cpu_bf16, expected):
    # no GPU needed: the choice reads only the device's type
    monkeypatch.setenv(precision.ENV_CPU_BF16, "1" if cpu_bf16 else "0")
    assert run_dtypes(model_dtype, train_precision, torch.device(device)) == expected


def test_load_as_trained_on_cuda_keeps_fp32_masters(monkeypatch):
    """The GPU path, without a GPU: what load_as_trained asks load_backbone for on a CUDA device."""
    from peftlab.config import ModelConfig
    from peftlab.models import loading

    asked = {}

    def fake_load_backbone(cfg, device=None, log=print, allow_unsafe_pickle=False, dtype=None, quantization=None):
        asked.update(device=device, dtype=dtype)
        return SimpleNamespace(compute_dtype=None)  # stands in for the Backbone

    monkeypatch.setattr(loading, "load_backbone", fake_load_backbone)
    backbone = loading.load_as_trained(ModelConfig(name="tiny-llama"), "auto", device=torch.device("cuda"))
    assert asked == {"device": torch.device("cuda"), "dtype": torch.float32}
    assert backbone.compute_dtype == torch.bfloat16
