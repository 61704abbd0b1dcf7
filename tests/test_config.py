from pathlib import Path

import pytest
import yaml

from peftlab.config import load_config
from peftlab.errors import PeftlabError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "train: {max_steps: 5}\n"), ["train.lr=3e-4", "method.rank=8", "name=x1"])
    assert cfg.train.lr == pytest.approx(3e-4)
    # LoRA's recorded defaults (config.CHANGED_DEFAULTS) are written into every run's config
    assert cfg.method.options() == {"rank": 8, "fast_dropout": True, "fused_dropout": True, "fused_add": True}
    assert cfg.run_dir() == Path("runs") / "x1"


def test_unknown_key_names_field_and_suggests(tmp_path):
    with pytest.raises(PeftlabError) as e:
        load_config(write(tmp_path, "train: {max_step: 5}\n"))
    msg = str(e.value)
    assert "train.max_step" in msg and "did you mean 'max_steps'" in msg and "cfg.yaml" in msg


def test_out_of_range_and_wrong_type(tmp_path):
    with pytest.raises(PeftlabError, match=r"train\.lr"):
        load_config(write(tmp_path, "train: {max_steps: 5, lr: -1}\n"))
    with pytest.raises(PeftlabError, match=r"train\.batch_size"):
        load_config(write(tmp_path, "train: {max_steps: 5, batch_size: many}\n"))


def test_method_options_validated_by_method(tmp_path):
    with pytest.raises(PeftlabError, match=r"method\.rnak.*did you mean 'rank'"):
        load_config(write(tmp_path, "method: {name: lora, rnak: 4}\ntrain: {max_steps: 5}\n"))
    with pytest.raises(PeftlabError, match=r"method\.rank"):
        load_config(write(tmp_path, "method: {name: lora, rank: 0}\ntrain: {max_steps: 5}\n"))
    with pytest.raises(PeftlabError, match="unknown method 'lroa'.*did you mean 'lora'"):
        load_config(write(tmp_path, "method: {name: lroa}\ntrain: {max_steps: 5}\n"))


def test_budget_required_for_training_methods_only(tmp_path):
    with pytest.raises(PeftlabError, match="a training budget is required: train.max_steps, epochs"):
        load_config(write(tmp_path, "method: {name: lora}\n"))
    assert load_config(write(tmp_path, "method: {name: none}\n")).method.name == "none"


def test_run_name_cannot_escape_output_dir(tmp_path):
    with pytest.raises(PeftlabError, match="name"):
        load_config(write(tmp_path, "name: ../../etc\ntrain: {max_steps: 1}\n"))


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(PeftlabError, match=r"cfg.yaml: line 3, column \d+ invalid YAML"):
        load_config(write(tmp_path, "train:\n  max_steps: 5\n  lr: a: b\n"))


def test_every_example_config_validates_and_starts_with_its_command(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    paths = sorted((root / "configs").rglob("*.yaml"))
    assert len(paths) >= 8
    for path in paths:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# peftlab "), f"{path}: must start with the command that runs it"
        if first.startswith("# peftlab compare"):
            from peftlab.comparison.compare import load_compare, run_configs

            runs = run_configs(load_compare(path), str(path))
            assert len(runs) >= 2
            for _, raw in runs:  # every run of the experiment is a valid run config
                run = tmp_path / "run.yaml"
                run.write_text(yaml.safe_dump(raw))
                load_config(run)
        else:
            load_config(path)


def test_tracker_without_its_package_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    path = tmp_path / "c.yaml"
    path.write_text("trackers: [wandb]\nmethod: {name: none}\n")
    with pytest.raises(PeftlabError, match=r"'wandb' needs the wandb package \(pip install wandb\)"):
        load_config(path)
    path.write_text("trackers: [tensorboard]\nmethod: {name: none}\n")
    assert load_config(path).trackers == ["tensorboard"]
