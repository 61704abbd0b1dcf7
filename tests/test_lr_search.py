"""compare's lr_grid / lr_factors: each method's learning rate is chosen on validation (never on
test) within the comparison's per-run budget, and the search's cost is reported beside the board."""

from __future__ import annotations

from pathlib import Path

import pytest

from peftlab.compare import compare
from peftlab.errors import PeftlabError
from peftlab.lr_choice import Choice, Trial
from peftlab.methods import get_method
from tests.test_compare import experiment, summaries


def test_chosen_on_validation_with_ties_to_the_smaller_lr():
    trials = [Trial("a", 1e-3, 0.5, 1, 1), Trial("b", 3e-3, 0.7, 1, 1), Trial("c", 1e-2, 0.7, 1, 1)]
    assert Choice("x", "acc", True, trials).chosen == 3e-3
    assert Choice("x", "loss", False, trials).chosen == 1e-3
    assert Choice("x", "acc", True, trials[:2] + [Trial("c", 1e-2, None, None, None)]).chosen is None


def test_compare_searches_the_grid_then_trains_every_seed_at_the_chosen_lr(tmp_path, copy_task):
    grid = [1e-4, 3e-2]
    methods = [{"label": "zero_shot", "name": "none"}, {"name": "lora", "rank": 4, "dropout": 0.0, "lr_grid": grid}]
    path = experiment(tmp_path, copy_task, methods=methods, train={"batch_size": 4})
    folder = compare(path)
    search = summaries(folder / "lr_search")
    assert sorted(search) == ["lora-lr0.0001", "lora-lr0.03"]
    assert all(s["steps"] == 6 and s["seed"] == 0 for s in search.values())  # the full per-run budget, first seed
    val = {s["lr"]: s["best_validation"]["exact_match"] for s in search.values()}
    best = max(val.values())
    expected = min(lr for lr, v in val.items() if v == best)
    runs = summaries(folder)
    assert sorted(runs) == ["lora-s0", "lora-s1", "zero_shot-s0"]
    assert runs["lora-s0"]["lr"] == runs["lora-s1"]["lr"] == pytest.approx(expected)
    board = (folder / "leaderboard.md").read_text()
    assert "## Learning-rate search" in board and f"| lora | exact_match 0.0001: {val[1e-4]:.4f}" in board
    assert "LR search" in (folder / "report.html").read_text()
    # Rerun: the search is read back from its folders, nothing is trained again.
    before = {p: p.stat().st_mtime_ns for p in folder.glob("**/summary.json")}
    compare(path)
    assert {p: p.stat().st_mtime_ns for p in folder.glob("**/summary.json")} == before


def test_lr_factors_multiply_each_method_s_own_lr(tmp_path, copy_task, monkeypatch):
    import peftlab.compare as compare_module

    seen = []
    monkeypatch.setattr(compare_module, "execute", lambda pool, planned, *rest: seen.append(planned) or [])
    monkeypatch.setattr("peftlab.report.write_report", lambda *a, **k: Path("r"))
    methods = [
        {"label": "zero_shot", "name": "none"},
        {"name": "prompt_tuning", "num_virtual_tokens": 4, "train": {"lr": 0.1}},
        {"name": "lora", "rank": 4},
    ]
    path = experiment(tmp_path, copy_task, methods=methods, train={"batch_size": 4}, lr_factors=[0.5, 2], seeds=[0])
    with pytest.raises(PeftlabError, match="lr search did not finish"):
        compare(path)
    search = {cfg.run_name(): cfg.train.lr for _, _, cfg in seen[0]}
    lora_default = get_method("lora").default_lr
    assert search == pytest.approx(
        {
            "prompt_tuning-lr0.05": 0.05,
            "prompt_tuning-lr0.2": 0.2,
            f"lora-lr{lora_default * 0.5:.3g}": lora_default * 0.5,
            f"lora-lr{lora_default * 2:.3g}": lora_default * 2,
        }
    )
    assert [cfg.run_name() for _, _, cfg in seen[1]] == ["zero_shot-s0"]  # searches unfinished: not trained


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"name": "none", "lr_grid": [1e-3]}, "lr_grid needs a method that trains"),
        ({"name": "lora", "lr_grid": [1e-3], "train": {"lr": 1e-3}}, "lr_grid or train.lr, not both"),
        ({"name": "lora", "lr_grid": [0, 1e-3]}, "method lora: lr_grid must be a list of positive"),
        ({"name": "lora", "lr_grid": "1e-3"}, "method lora: lr_grid must be a list of positive"),
    ],
)
def test_bad_grids_name_the_method(tmp_path, copy_task, entry, message):
    path = experiment(tmp_path, copy_task, methods=[entry], train={"batch_size": 4})
    with pytest.raises(PeftlabError, match=message):
        compare(path)
    assert not (tmp_path / "runs" / "cmp" / "lr_search").exists()
