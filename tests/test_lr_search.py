"""compare's lr search, on by default: every training method's lr chosen on validation (never test)
by successive halving; the chosen value's search run goes on from its checkpoint as the label's
first-seed run, and the search's cost is reported beside the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import peftlab.comparison.compare as compare_module
from peftlab.cli import main
from peftlab.comparison import lr_search
from peftlab.comparison.compare import compare
from peftlab.comparison.lr_choice import SEARCH_DIR, Choice, Rung, Trial, search_cost
from peftlab.config import load_config
from peftlab.errors import PeftlabError
from peftlab.methods import get_method
from peftlab.rundir.folder import RUNGS, VALIDATION_PREDICTIONS
from peftlab.rundir.runio import read_jsonl, read_predictions_csv
from peftlab.training.train import train
from tests.test_compare import experiment as compare_experiment
from tests.test_compare import summaries


def experiment(tmp_path: Path, copy_task: dict, **over) -> Path:
    """test_compare's experiment, with lr_search only where a test gives it (its absence is the default)."""
    path = compare_experiment(tmp_path, copy_task, **over)
    exp = yaml.safe_load(path.read_text())
    if "lr_search" not in over:
        exp.pop("lr_search", None)
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def trial(lr: float, *values: float, rungs=(0.1, 0.3)) -> Trial:
    """A grid value that reached len(values) rungs with those best-so-far scores."""
    t = Trial(f"x-lr{lr:g}", lr)
    for stop_at, v in zip(rungs, values):
        t.rungs[stop_at] = Rung(stop_at, 1, 1.0, 1.0, v, 1)
    return t


def test_successive_halving_keeps_the_best_third_then_one_with_ties_to_the_smaller_lr():
    # One rung: every value reaches it, the best goes on; a tie goes to the smaller lr.
    one = [trial(1e-3, 0.5), trial(3e-3, 0.7), trial(1e-2, 0.7)]
    assert Choice("x", "acc", True, one, [0.1]).chosen == 3e-3
    assert Choice("x", "loss", False, one, [0.1]).chosen == 1e-3
    waiting = Choice("x", "acc", True, one[:2] + [trial(1e-2)], [0.1])
    assert waiting.chosen is None and [(t.lr, r) for t, r in waiting.pending()] == [(1e-2, 0.1)]
    # Two rungs, nine values: the best three of the first rung go on to the second, which picks one.
    nine = [trial(lr, v) for lr, v in zip(range(1, 10), [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.5])]
    c = Choice("x", "acc", True, nine, [0.1, 0.3])
    assert sorted(t.lr for t, r in c.pending()) == [2, 4, 6] and {r for _, r in c.pending()} == {0.3}
    for lr, v in ((2, 0.1), (4, 0.3), (6, 0.2)):
        nine[lr - 1].rungs[0.3] = Rung(0.3, 3, 3.0, 3.0, v, 3)
    assert c.chosen == 4 and c.runner_up.lr == 6 and c.edge is None and not c.pending()
    # Cost: everything trained, less the chosen value's part, which its first-seed run goes on with.
    assert c.flops == 9 * 1.0 + 3 * 2.0 and c.extra == (c.flops - 3.0, c.train_seconds - 3.0)
    rising = [trial(1e-3, 0.5), trial(3e-3, 0.6), trial(1e-2, 0.7)]
    assert Choice("x", "acc", True, rising, [0.1]).edge == "largest"
    assert Choice("x", "loss", False, rising, [0.1]).edge == "smallest"


def search_experiment(tmp_path, copy_task, **over) -> Path:
    """lora alone, two seeds, 6 steps with validations at the half and the end, the default search:
    its rung (1/3 of the budget, step 2) is no validation point, so the search validates there."""
    methods = [{"name": "lora", "rank": 4, "dropout": 0.0}]
    train_section = {"batch_size": 4, "lr": 1e-2}
    return experiment(tmp_path, copy_task, methods=methods, train=train_section, **over)


def assert_continued_is_uninterrupted(tmp_path, folder, logged) -> None:
    """The continued run is the run that never stopped: same learning curve, same kept weights."""
    cfg = load_config(folder / "lora-s0" / "config.yaml", [f"output_dir={tmp_path / 'alone'}", "name=lora-s0"])
    alone = train(cfg)
    kept = load_file(folder / "lora-s0" / "adapter" / "adapter_model.safetensors")
    whole = load_file(alone / "adapter" / "adapter_model.safetensors")
    assert kept.keys() == whole.keys() and all(torch.equal(kept[k], whole[k]) for k in kept)

    def curve(lines):  # the learning curve without the seconds it took
        return [
            {**r, "seconds": 0} | ({"validation": {**r["validation"], "seconds": 0}} if "validation" in r else {})
            for r in lines
        ]

    assert curve(read_jsonl(alone / "metrics.jsonl")) == curve(logged)


def test_the_search_stops_every_value_at_its_rung_and_only_the_winner_goes_on(tmp_path, copy_task, monkeypatch):
    path = search_experiment(tmp_path, copy_task)
    folder = tmp_path / "runs" / "cmp"
    # Interrupted once the search has chosen, before anything continued: the rerun trains no search run again.
    with monkeypatch.context() as m:
        m.setattr(lr_search, "continue_chosen", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            compare(path)
    search = {p.name: p for p in (folder / SEARCH_DIR).iterdir() if p.is_dir()}
    assert sorted(search) == ["lora-lr0.00333", "lora-lr0.01", "lora-lr0.03"]  # x1/3, x1, x3 of its lr
    stops = {name: read_jsonl(d / RUNGS) for name, d in search.items()}
    assert all(len(s) == 1 and s[0]["step"] == 2 and s[0]["stop_at"] == pytest.approx(1 / 3) for s in stops.values())
    assert not any((d / "summary.json").exists() for d in search.values())  # stopped, not finished
    assert all((d / "checkpoint" / "state.json").is_file() for d in search.values())
    rows = read_predictions_csv(search["lora-lr0.01"] / VALIDATION_PREDICTIONS, ("id", "score"))
    assert len(rows) == 2 and {r["score"] for r in rows} <= {"0", "1"}
    before = {p: p.stat().st_mtime_ns for p in (folder / SEARCH_DIR).glob("*/" + RUNGS)}

    compare(path)
    assert {p: p.stat().st_mtime_ns for p in (folder / SEARCH_DIR).glob("*/" + RUNGS)} == before
    val = {name: s[0]["best_validation"]["exact_match"] for name, s in stops.items()}
    winner = min(search, key=lambda n: (-val[n], float(n.split("-lr")[1])))
    runs = summaries(folder)
    assert sorted(runs) == ["lora-s0", "lora-s1"]
    chosen = float(load_config(search[winner] / "config.yaml").train.lr)
    assert runs["lora-s0"]["lr"] == runs["lora-s1"]["lr"] == chosen
    # The winner's checkpoint moved on, the others' dropped, and no stale copy of best weights stays.
    assert not any((d / "checkpoint").exists() or (d / "best.safetensors").exists() for d in search.values())
    logged = read_jsonl(folder / "lora-s0" / "metrics.jsonl")
    assert [r["step"] for r in logged if "train_loss" in r] == [1, 2, 3, 4, 5, 6]  # each step once
    assert [r["step"] for r in logged if "validation" in r] == [0, 3, 6]  # the rung's pass is not on its curve
    # Search and first-seed run together: at most 1.7 runs (3 x 1/3 + 2/3).
    spent = sum(s[0]["flops"] for s in stops.values()) + runs["lora-s0"]["flops"] - stops[winner][0]["flops"]
    assert spent <= 1.7 * runs["lora-s0"]["flops"]
    extra_flops, extra_seconds = search_cost(folder)["lora"]
    assert extra_flops == pytest.approx(spent - runs["lora-s0"]["flops"]) and extra_seconds > 0
    board = (folder / "leaderboard.md").read_text()
    multiple = (runs["lora-s0"]["flops"] + runs["lora-s1"]["flops"]) / 2
    assert f"x{(multiple + extra_flops) / multiple:.2f} FLOPs" in board and "## Learning-rate search" in board
    assert "LR search" in (folder / "report.html").read_text()

    assert_continued_is_uninterrupted(tmp_path, folder, logged)
    # The untrained model (the seed's, whatever the lr) was scored by one search run only.
    untrained = [d.name for d in search.values() if any(r["step"] == 0 for r in read_jsonl(d / "metrics.jsonl"))]
    assert untrained == ["lora-lr0.00333"]

    rerun = {p: p.stat().st_mtime_ns for p in folder.glob("**/summary.json")}
    compare(path)  # finished: nothing trained again
    assert {p: p.stat().st_mtime_ns for p in folder.glob("**/summary.json")} == rerun


def planned_by_compare(monkeypatch, path) -> list[list]:
    """What compare would launch, phase by phase, without training anything."""
    seen = []
    monkeypatch.setattr(compare_module, "execute", lambda pool, planned, *rest: seen.append(planned) or [])
    monkeypatch.setattr("peftlab.report.write_report", lambda *a, **k: Path("r"))
    try:
        compare(path)
    except PeftlabError as e:
        assert "lr search did not finish" in str(e) or "did not reach its rung" in str(e)
    return seen


def test_by_default_each_training_method_searches_a_third_to_three_times_its_own_lr(tmp_path, copy_task, monkeypatch):
    methods = [
        {"label": "zero_shot", "name": "none"},
        {"name": "prompt_tuning", "num_virtual_tokens": 4, "train": {"lr": 0.1}},
        {"name": "lora", "rank": 4},
    ]
    path = experiment(tmp_path, copy_task, methods=methods, train={"batch_size": 4}, seeds=[0])
    first = planned_by_compare(monkeypatch, path)[0]
    search = {cfg.run_name(): (cfg.train.lr, cfg.train.stop_at, cfg.seed) for _, _, cfg in first}
    lora = get_method("lora").default_lr
    expected = {f"prompt_tuning-lr{0.1 * f:.3g}": 0.1 * f for f in (1 / 3, 1, 3)}
    expected |= {f"lora-lr{lora * f:.3g}": lora * f for f in (1 / 3, 1, 3)}
    assert {k: v[0] for k, v in search.items()} == pytest.approx(expected)  # zero-shot never searched
    assert all(stop_at == pytest.approx(1 / 3) and seed == 0 for _, stop_at, seed in search.values())


def test_lr_factors_and_lr_search_give_the_grid_and_rungs(tmp_path, copy_task, monkeypatch):
    methods = [{"name": "lora", "rank": 4, "train": {"lr": 1e-3}}, {"name": "full", "lr_grid": [1e-5, 1e-4]}]
    path = experiment(tmp_path, copy_task, methods=methods, seeds=[0], lr_factors=[0.5, 2])
    search = {cfg.run_name(): cfg.train.lr for _, _, cfg in planned_by_compare(monkeypatch, path)[0]}
    assert search == pytest.approx(
        {"lora-lr0.0005": 5e-4, "lora-lr0.002": 2e-3, "full-lr1e-05": 1e-5, "full-lr0.0001": 1e-4}
    )
    path = experiment(
        tmp_path, copy_task, methods=methods[:1], seeds=[0], lr_search={"factors": [1, 10], "rungs": [0.25, 0.5]}
    )
    first = planned_by_compare(monkeypatch, path)[0]
    assert {(cfg.train.lr, cfg.train.stop_at) for _, _, cfg in first} == {(1e-3, 0.25), (1e-2, 0.25)}


def test_lr_search_off_trains_every_method_at_its_one_lr(tmp_path, copy_task, monkeypatch):
    methods = [{"name": "lora", "rank": 4}, {"name": "full", "train": {"lr": 3e-5}}]
    path = experiment(tmp_path, copy_task, methods=methods, train={"batch_size": 4}, seeds=[0], lr_search="off")
    phases = planned_by_compare(monkeypatch, path)
    assert len(phases) == 1
    assert {cfg.run_name(): (cfg.train.lr, cfg.train.stop_at) for _, _, cfg in phases[0]} == {
        "lora-s0": (None, None),
        "full-s0": (3e-5, None),
    }
    assert not (tmp_path / "runs" / "cmp" / SEARCH_DIR).exists()
    # With the search on, a grid of one value is that lr, unsearched.
    methods = [{"name": "lora", "rank": 4, "lr_grid": [2e-3]}]
    path = experiment(tmp_path, copy_task, methods=methods, train={"batch_size": 4}, seeds=[0])
    phases = planned_by_compare(monkeypatch, path)
    assert [[(cfg.run_name(), cfg.train.lr) for _, _, cfg in phase] for phase in phases] == [[("lora-s0", 2e-3)]]


@pytest.mark.parametrize(
    "over, message",
    [
        ({"lr_search": {"factors": [0, 1]}}, r"lr_search\.factors: .*positive factors"),
        ({"lr_search": {"factors": [-1, 1]}}, r"lr_search\.factors: .*positive factors"),
        ({"lr_search": {"rungs": [1.0]}}, r"lr_search\.rungs: .*0 < rung < 1"),
        ({"lr_search": {"rungs": [0]}}, r"lr_search\.rungs: .*0 < rung < 1"),
        ({"lr_search": {"rungs": [2.5]}}, r"lr_search\.rungs: .*whole budget or past it"),
        ({"lr_search": {"rungs": [0.5, 0.3]}}, r"lr_search\.rungs: .*increasing order"),
        ({"lr_search": {"rung": [0.3]}}, r"lr_search\.rung: unknown key.*allowed: enabled, factors, rungs"),
        ({"lr_search": "maybe"}, r"lr_search: .*give off, on, or a mapping"),
        ({"lr_search": "off", "lr_factors": [1, 3]}, "lr_factors .* lr_search is off"),
        ({"lr_search": {"factors": [1, 3]}, "lr_factors": [1, 3]}, "lr_search.factors or lr_factors, not both"),
        ({"lr_search": "off", "methods": [{"name": "lora", "lr_grid": [1e-3, 1e-2]}]}, "lr_grid .* lr_search is off"),
        ({"methods": [{"name": "none", "lr_grid": [1e-3]}]}, "lr_grid needs a method that trains"),
        ({"methods": [{"name": "lora", "lr_grid": [1e-3], "train": {"lr": 1e-3}}]}, "lr_grid or train.lr, not both"),
        ({"methods": [{"name": "lora", "lr_grid": [0, 1e-3]}]}, "method lora: lr_grid must be a list of positive"),
    ],
)
def test_bad_lr_search_settings_are_errors_naming_the_key_and_nothing_is_written(
    tmp_path, copy_task, over, message, capsys
):
    path = experiment(tmp_path, copy_task, **over)
    with pytest.raises(PeftlabError, match=message):
        compare(path)
    assert main(["compare", str(path)]) == 2  # the command: the message, exit code 2, no traceback
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def write_search_run(folder: Path, label: str, lr: float, rungs: list[tuple[float, float, list[int]]]):
    """A search run folder as rung.py leaves it: config.yaml and rungs.jsonl (rung, best so far, and
    that best's score on each validation example)."""
    run = folder / SEARCH_DIR / f"{label}-lr{lr:.3g}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(json.dumps({"label": label, "train": {"lr": lr}}))
    lines = [
        {"stop_at": r, "step": 10 * (i + 1), "flops": 1e9 * (i + 1), "train_seconds": 2.0 * (i + 1), "best_step": 10}
        | {"metric": "accuracy", "higher_is_better": True, "best_validation": {"accuracy": sum(s) / len(s)}}
        | {"example_scores": {f"v{k}": x for k, x in enumerate(s)}}
        for i, (r, s) in enumerate(rungs)
    ]
    (run / RUNGS).write_text("".join(json.dumps(line) + "\n" for line in lines))


def right(k: int, n: int = 40) -> list[int]:
    return [1] * k + [0] * (n - k)


def test_the_report_shows_each_value_at_each_rung_and_flags_an_edge_choice_and_noise(tmp_path):
    from peftlab.comparison.lr_choice import found
    from peftlab.report import lr_table

    folder = tmp_path / "cmp"
    # lora, one rung: the largest lr wins by 2 of 40 validation examples (inside the noise).
    for lr, k in ((1e-4, 20), (3e-4, 24), (1e-3, 26)):
        write_search_run(folder, "lora", lr, [(1 / 3, right(k))])
    # full, two rungs: the middle lr wins the first by 20 of 40 (outside the noise) and goes on alone.
    write_search_run(folder, "full", 1e-5, [(0.1, right(4))])
    write_search_run(folder, "full", 3e-5, [(0.1, right(32)), (1 / 3, right(36))])
    write_search_run(folder, "full", 1e-4, [(0.1, right(12))])
    searches = found(folder)
    assert [(c.label, c.chosen, c.edge) for c in searches] == [("full", 3e-5, None), ("lora", 1e-3, "largest")]
    board = lr_table.markdown(searches)
    assert "| label | lr | validation @ 10% | validation @ 33% | chosen |" in board
    assert "| full | 1e-05 | 0.1000 | - |  |" in board and "| full | 3e-05 | 0.8000 | 0.9000 | * |" in board
    assert "best at the largest lr tried: widen the grid; inside validation noise: chosen - runner-up +0.0500" in board
    assert "| full | accuracy | 3e-05 | outside validation noise: chosen - runner-up +0.5000" in board
    assert "Learning-rate search" in lr_table.html(searches)
    # Cost: what no run contains (the chosen value's part goes on as its first seed).
    assert search_cost(folder) == {"full": (4e9 - 2e9, 8.0 - 4.0), "lora": (2e9, 4.0)}


def test_a_damaged_grid_json_is_read_off_the_search_runs_instead(tmp_path):
    from peftlab.comparison.lr_choice import PLAN, found

    folder = tmp_path / "cmp"
    for lr, k in ((1e-4, 20), (3e-4, 24)):
        write_search_run(folder, "lora", lr, [(1 / 3, right(k))])
    scanned = [(c.label, c.chosen) for c in found(folder)]
    for damaged in ('{"lora": {"lrs": [0.0001', "[1, 2]", '{"lora": 3}'):
        (folder / SEARCH_DIR / PLAN).write_text(damaged)
        assert [(c.label, c.chosen) for c in found(folder)] == scanned == [("lora", 3e-4)]


def test_a_stopped_search_run_of_another_config_starts_again(tmp_path, copy_task):
    from peftlab.config import dump_config

    raw = {"name": "lora-s0", "label": "lora", "output_dir": str(tmp_path), "seed": 0, "trackers": []}
    raw |= {"model": {"name": "tiny-llama"}, "method": {"name": "lora"}, "task": copy_task}
    raw |= {"train": {"max_steps": 6, "evals": 2}}
    grid = {"lora": [1e-3, 1e-2]}
    for lr, steps in ((1e-3, 6), (1e-2, 9)):  # 1e-2 stopped at its rung of another budget
        cfg = load_config(
            None,
            base=lr_search.search_config({**raw, "train": {**raw["train"], "max_steps": steps}}, lr, tmp_path, 0.5),
        )
        cfg.run_dir().mkdir(parents=True)
        (cfg.run_dir() / "config.yaml").write_text(dump_config(cfg))
        (cfg.run_dir() / RUNGS).write_text("{}\n")
    lr_search.discard_stale(grid, {"lora": raw}, tmp_path, [1 / 3])  # stop_at is not part of the match
    assert (tmp_path / SEARCH_DIR / "lora-lr0.001" / RUNGS).is_file()
    assert not (tmp_path / SEARCH_DIR / "lora-lr0.01" / RUNGS).exists()


def test_the_first_seed_run_gets_the_untrained_score_the_grid_s_first_value_made(tmp_path):
    from peftlab.rundir.runio import append_jsonl

    first, chosen = trial(1e-3, 0.1, rungs=(0.5,)), trial(1e-2, 0.9, rungs=(0.5,))
    for t, lines in ((first, [0, 1, 2]), (chosen, [1, 2])):
        t.dir = tmp_path / t.run
        t.dir.mkdir()
        for step in lines:
            append_jsonl(t.dir / "metrics.jsonl", {"step": step, "validation": {"acc": step / 10}, "lr": t.lr})
    c = Choice("x", "acc", True, [first, chosen], [0.5])
    cfg = load_config(None, base={"train": {"max_steps": 4}})
    assert [(r["step"], r["lr"]) for r in lr_search.curve(c, cfg)] == [(0, 1e-3), (1, 1e-2), (2, 1e-2)]
    no_untrained = load_config(None, base={"train": {"max_steps": 4}, "eval": {"validate_untrained": False}})
    assert [r["step"] for r in lr_search.curve(c, no_untrained)] == [1, 2]
