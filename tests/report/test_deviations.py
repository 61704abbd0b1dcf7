"""Departures labelled where the number is shown: a method entry's own warmup, schedule or gradient
checkpointing, and a method's departure from its paper, mark the row (†) and fill its note."""

from __future__ import annotations

import json

import yaml

from peftlab.methods import REGISTRY
from peftlab.methods.hybrid import PREFIX_GATE
from peftlab.report import write_report
from peftlab.report.aggregate import compare_runs
from peftlab.report.runs import load_runs
from tests.report.fakes import fake_run


def set_train(run_dir, **values) -> None:
    path = run_dir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["train"].update(values)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def comparison(root):
    for label in ("a", "b", "c", "d"):
        for seed in (0, 1):
            d = fake_run(
                root,
                f"{label}-s{seed}",
                label=label,
                method="lora",
                seed=seed,
                example_scores=[1.0] * 5 + [0.0] * 5,
                trainable=1000,
            )
            set_train(d, warmup_ratio=0.0 if label == "b" else 0.1, schedule="linear")
            if label == "c":
                set_train(d, gradient_checkpointing=True)
            if label == "d":
                summary = json.loads((d / "summary.json").read_text())
                (d / "summary.json").write_text(json.dumps({**summary, "deviations": [PREFIX_GATE]}))
    return root


def test_a_method_of_its_own_settings_and_a_departure_from_the_paper_are_marked(tmp_path):
    (comp,) = compare_runs(load_runs(comparison(tmp_path)))
    notes = {e.label: e.note for e in comp.entries}
    # Three of four labels warm up over 0.1 of the budget: b's 0.0 is the departure, not theirs.
    assert notes["b"] == "train.warmup_ratio 0.0 (the comparison's: 0.1)"
    # gradient_checkpointing: c alone sets it (the others leave it out of their configs: None).
    assert notes["c"] == "train.gradient_checkpointing True (the comparison's: None)"
    assert notes["d"] == PREFIX_GATE and notes["a"] is None
    write_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| b † |" in md and "| a |" in md
    assert f"† d: {PREFIX_GATE}" in md
    rows = {r["label"]: r for r in json.loads((tmp_path / "leaderboard.json").read_text())}
    assert rows["d"]["deviations"] == [PREFIX_GATE] and rows["a"]["deviations"] == []


def test_unipelt_records_its_prefix_gate_and_mam_does_not():
    hybrid = REGISTRY["hybrid"]

    def method_options(entry: dict):
        return REGISTRY[entry["name"]].config_cls.model_validate({k: v for k, v in entry.items() if k != "name"})

    prefix, lora, adapter = {"name": "prefix_tuning"}, {"name": "lora"}, {"name": "series_adapter"}
    unipelt = method_options({"name": "hybrid", "gates": True, "methods": [lora, prefix, adapter]})
    assert hybrid.deviations(unipelt) == (PREFIX_GATE,)
    mam = method_options({"name": "hybrid", "methods": [prefix, {"name": "parallel_adapter"}]})
    gated_lora = method_options({"name": "hybrid", "gates": True, "methods": [lora, adapter]})
    assert hybrid.deviations(mam) == () == hybrid.deviations(gated_lora)
    assert REGISTRY["lora"].deviations(method_options({"name": "lora"})) == ()
