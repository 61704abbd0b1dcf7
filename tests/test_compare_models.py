"""Several models in one experiment (`models: [a, b]`): every method on each model, one leaderboard per
model, and the cross-model table with Kendall's tau and its interval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from peftlab.comparison.compare import compare, load_compare
from peftlab.comparison.experiment import model_folder
from peftlab.errors import PeftlabError
from peftlab.report import build_report
from peftlab.report.cross_model import CrossModel, agreement
from peftlab.report.cross_model_view import verdict_lines
from peftlab.report.top_group import Family


def experiment(tmp_path: Path, task: dict, **over) -> Path:
    exp = {
        "name": "across",
        "output_dir": str(tmp_path / "runs"),
        "models": [{"name": "tiny-llama"}, {"name": "tiny-gpt-neo"}],
        "task": task,
        "budget": {"steps": 4},
        "evals": 1,
        "seeds": [0],
        "trackers": [],
        "train": {"batch_size": 4, "lr": 1e-2},
        "eval": {"batch_size": 8},
        "lr_search": "off",
        "methods": [{"label": "zero_shot", "name": "none"}, {"name": "lora", "rank": 4, "dropout": 0.0}],
        **over,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def test_every_method_runs_on_each_model_with_a_leaderboard_each_and_a_table_across(tmp_path, copy_task, capsys):
    folder = compare(experiment(tmp_path, copy_task))
    index = json.loads((folder / "models.json").read_text())
    assert index["models"] == [
        {"model": "tiny-llama", "folder": "tiny-llama"},
        {"model": "tiny-gpt-neo", "folder": "tiny-gpt-neo"},
    ]
    for model in ("tiny-llama", "tiny-gpt-neo"):
        sub = folder / model
        for run in ("zero_shot-s0", "lora-s0"):
            summary = json.loads((sub / run / "summary.json").read_text())
            assert summary["model"] == model and summary["steps"] == (4 if run.startswith("lora") else 0)
        assert (sub / "report.html").is_file()  # each model's own comparison, complete
    rows = json.loads((folder / "leaderboard.json").read_text())
    # Two models' runs of one label are two leaderboards, not two seeds of one row.
    assert sorted((r["model"], r["label"], r["n_seeds"]) for r in rows) == [
        ("tiny-gpt-neo", "lora", 1),
        ("tiny-gpt-neo", "zero_shot", 1),
        ("tiny-llama", "lora", 1),
        ("tiny-llama", "zero_shot", 1),
    ]
    (across,) = json.loads((folder / "cross_models.json").read_text())
    assert across["models"] == ["tiny-llama", "tiny-gpt-neo"] and sorted(across["labels"]) == ["lora", "zero_shot"]
    (a,) = across["agreements"]
    assert a["pairs"] == 1 and -1 <= a["low"] <= a["tau"] <= a["high"] <= 1
    # The point is the product of the two models' orders of the one pair, read off their leaderboards.
    means = across["means"]
    orders = [means["lora"][m] - means["zero_shot"][m] for m in across["models"]]
    assert a["tau"] == (0.0 if 0 in orders else (1.0 if orders[0] * orders[1] > 0 else -1.0))
    assert across["verdict"] and any("Kendall's tau" in line for line in across["verdict"])
    page = (folder / "report.html").read_text()
    assert page.index("Across models") < page.index(f"{copy_task['name']} · tiny-llama")  # the answer first
    assert f"{copy_task['name']} · tiny-gpt-neo" in page
    assert (folder / "plots" / f"{copy_task['name']}-ranks-across-models.png").read_bytes().startswith(b"\x89PNG")
    # `peftlab report` on the top folder draws the same thing from the sub-folders, and says it.
    from peftlab.cli import main

    assert main(["report", str(folder)]) == 0
    said = " ".join("".join(capsys.readouterr()).split())  # the tables on the console (stderr), the path on stdout
    assert f"{copy_task['name']} across models" in said and "Kendall's tau over 2 methods" in said
    again = build_report(folder)
    assert sorted(c.model for c in again.comparisons) == ["tiny-gpt-neo", "tiny-llama"]
    assert len(again.across) == 1 and again.across[0].agreements[0].tau == a["tau"]


def test_a_method_that_does_not_fit_the_second_model_stops_compare_before_the_first_trains(tmp_path, copy_task):
    # tiny-llama has no biases: BitFit cannot train it. Found before tiny-gpt-neo's runs start.
    path = experiment(
        tmp_path,
        copy_task,
        models=[{"name": "tiny-gpt-neo"}, {"name": "tiny-llama"}],
        methods=[{"name": "bitfit"}],
    )
    with pytest.raises(PeftlabError, match=r"models: tiny-llama") as e:
        compare(path)
    assert "bitfit" in str(e.value).lower()
    assert not (tmp_path / "runs" / "across").exists()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"model": {"name": "tiny-llama"}}, "give model .one. or models .several., not both"),
        ({"models": [{"name": "tiny-llama"}]}, "models needs two or more entries"),
        ({"models": [{"name": "a/tiny-llama"}, {"name": "b/tiny-llama"}]}, "tiny-llama would be shared by two"),
    ],
)
def test_models_errors_name_the_problem(tmp_path, copy_task, over, message):
    with pytest.raises(PeftlabError, match=message):
        load_compare(experiment(tmp_path, copy_task, **over))


def test_model_folder_is_the_last_part_of_the_name():
    assert model_folder("./models/my-llama/") == "my-llama"
    assert model_folder("HuggingFaceTB/SmolLM2-360M") == "SmolLM2-360M"
    assert model_folder("C:\\models\\x y") == "x_y"
    assert model_folder("..") == "model"


def family(points: dict[str, float], separated: set[frozenset]) -> Family:
    """A Family whose intervals separate exactly the pairs in ``separated`` (se 1, c chosen per pair)."""
    fam = Family(labels=len(points), critical=2.0, examples=100, seeds=3, points=points)
    for a in points:
        for b in points:
            if a < b:
                pair = frozenset((a, b))
                gap = abs(points[a] - points[b])
                fam.pair_se[pair] = 1.0
                fam.pair_critical[pair] = gap / 2 if pair in separated else gap * 2 + 1
    return fam


def test_tau_and_its_interval_match_a_hand_count():
    # Model x orders a > b > c, every pair settled. Model y orders a > c > b, but cannot settle b vs c.
    x = {"a": 0.9, "b": 0.6, "c": 0.3}
    y = {"a": 0.8, "b": 0.4, "c": 0.5}
    every = {frozenset(p) for p in (("a", "b"), ("a", "c"), ("b", "c"))}
    families = {"x": family(x, every), "y": family(y, every - {frozenset(("b", "c"))})}
    means = {lb: {"x": x[lb], "y": y[lb]} for lb in x}
    got = agreement("x", "y", ["a", "b", "c"], means, families, sign=1)
    # Point: (a,b) same, (a,c) same, (b,c) opposite: (2 - 1) / 3. Interval: (a,b), (a,c) known and
    # concordant (K = 2), (b,c) unknown (U = 1): [(2 - 1) / 3, (2 + 1) / 3].
    assert got.tau == pytest.approx(1 / 3) and got.low == pytest.approx(1 / 3) and got.high == pytest.approx(1.0)
    assert (got.known, got.pairs) == (2, 3)
    # Lower is better flips every order on both models alike: the same agreement.
    flipped = agreement("x", "y", ["a", "b", "c"], means, families, sign=-1)
    assert (flipped.tau, flipped.low, flipped.high) == (got.tau, got.low, got.high)


def two_models_disagreeing() -> CrossModel:
    """lora best on x and worse on y, full the other way round."""
    return CrossModel(
        task="t",
        metric="accuracy",
        models=["x", "y"],
        labels=["lora", "full"],
        means={"lora": {"x": 0.9, "y": 0.5}, "full": {"x": 0.8, "y": 0.9}},
        ranks={"lora": {"x": 1.0, "y": 2.0}, "full": {"x": 2.0, "y": 1.0}},
        standing={"lora": {"x": "best", "y": "worse"}, "full": {"x": "top group", "y": "best"}},
        top={"x": ["lora", "full"], "y": ["full"]},
        agreements=[],
    )


def test_verdict_names_the_label_that_moves_out_of_the_top_group():
    cm = two_models_disagreeing()
    lines = verdict_lines(cm)
    assert lines == ["lora moves: best on x; worse on y."]
    cm.top["y"] = ["lora", "full"]
    assert verdict_lines(cm) == ["The top group is the same on every model: lora, full."]


def test_models_flag_replaces_the_files_model_and_keeps_its_settings(tmp_path, copy_task, capsys):
    from peftlab.cli import main
    from peftlab.comparison.compare import run_configs

    path = experiment(tmp_path, copy_task, models=None, model={"name": "tiny-llama", "chat_template": False})
    cc = load_compare(path, models=["tiny-llama", "tiny-t5"])
    assert cc.models is not None and [(m.name, m.chat_template) for m in cc.models] == [
        ("tiny-llama", False),
        ("tiny-t5", False),
    ]
    runs = run_configs(cc, str(path))  # every model's runs, each in its model's sub-folder
    assert [(raw["model"]["name"], Path(raw["output_dir"]).name, raw["name"]) for _, raw in runs] == [
        ("tiny-llama", "tiny-llama", "zero_shot-s0"),
        ("tiny-llama", "tiny-llama", "lora-s0"),
        ("tiny-t5", "tiny-t5", "zero_shot-s0"),
        ("tiny-t5", "tiny-t5", "lora-s0"),
    ]
    assert load_compare(path, models=["tiny-t5"]).model.name == "tiny-t5"  # one name: a single-model experiment
    assert main(["compare", str(path), "--models", " , "]) == 2
    assert "--models ' , ': give model names or folders" in capsys.readouterr().err


def test_rank_plot_is_drawn_with_two_labels_and_says_why_not_with_one():
    from peftlab.report.cross_model import Agreement
    from peftlab.report.cross_model_plot import rank_plot

    cm = two_models_disagreeing()
    cm.agreements = [Agreement("x", "y", -1.0, -1.0, 1.0, 0, 1)]
    assert rank_plot(cm).png.startswith(b"\x89PNG")
    cm.labels = ["lora"]
    one = rank_plot(cm)
    assert one.png is None and one.note == "fewer than two methods ran on every model"


def test_plan_and_check_cover_every_models_runs(tmp_path, copy_task):
    from peftlab.comparison.plan import make_plan, plan_lines, validate
    from peftlab.comparison.probe import Timing

    path = experiment(tmp_path, copy_task, lr_search={"factors": [0.5, 1.0], "rungs": [0.5]})
    checked = validate(path)
    assert len(checked.runs) == 4 and checked.grid == {"lora": [0.005, 0.01]}
    plan = make_plan(path, timing=Timing(min_steps=1, min_seconds=0.0, max_steps=1))
    # Each model searches lora's lr on its own first seed.
    assert [(r.model, r.name, r.lrs) for r in plan.runs] == [
        ("tiny-llama", "zero_shot-s0", None),
        ("tiny-llama", "lora-s0", [0.005, 0.01]),
        ("tiny-gpt-neo", "zero_shot-s0", None),
        ("tiny-gpt-neo", "lora-s0", [0.005, 0.01]),
    ]
    assert all(r.seconds and r.seconds > 0 for r in plan.runs) and plan.runs[1].trainable != plan.runs[3].trainable
    text = "\n".join(plan_lines(plan))
    assert "tiny-llama/lora-s0" in text and "tiny-gpt-neo/lora-s0" in text
    assert not (tmp_path / "runs").exists()  # nothing written
