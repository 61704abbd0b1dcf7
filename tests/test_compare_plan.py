"""`peftlab compare --plan` and `peftlab check` on an experiment file: compare's checks, the runs it would
train, their steps and FLOPs per step, and a wall-time estimate from a probe; nothing is written."""

from __future__ import annotations

import json

import pytest

from peftlab.cli.entry import main
from peftlab.comparison import probe as probe_module
from peftlab.comparison.compare import load_compare, run_configs
from peftlab.comparison.plan import make_plan, search_shape
from peftlab.comparison.probe import Timing, decode_fit, typical
from peftlab.config import load_config
from peftlab.rundir.folder import RunDir
from peftlab.rundir.summary import RunSummary
from peftlab.training.train import train
from tests.test_compare import experiment


def test_a_typo_in_the_third_method_is_named_with_its_label_and_the_key_meant_and_nothing_is_written(
    tmp_path, copy_task, capsys
):
    methods = [
        {"label": "zero_shot", "name": "none"},
        {"name": "lora", "rank": 4, "dropout": 0.0},
        {"label": "soft", "name": "prompt_tuning", "num_virtual_token": 4},
    ]
    path = experiment(tmp_path, copy_task, methods=methods)
    for argv in (["compare", str(path), "--plan"], ["compare", str(path), "--dry-run", "--json"], ["check", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "method soft" in err and "methods[2].num_virtual_token" in err, err
        assert "did you mean 'num_virtual_tokens'" in err
    assert not (tmp_path / "runs").exists()


def test_the_plan_lists_the_runs_compare_trains_with_their_flops_per_step_and_a_positive_estimate(
    tmp_path, copy_task, capsys
):
    path = experiment(tmp_path, copy_task, seeds=[0, 1], budget={"flops": 4.0e7})
    assert main(["compare", str(path), "--plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert not (tmp_path / "runs").exists()  # nothing written
    cc = load_compare(path)
    assert [r["name"] for r in plan["runs"]] == [raw["name"] for _, raw in run_configs(cc, str(path))]
    assert all(r["seconds"] > 0 for r in plan["runs"])  # per run, each its own terms
    for r in plan["runs"]:
        assert r["seconds"] == pytest.approx(sum(r["parts"].values())) and r["parts"]["generate"] > 0
        assert (r["parts"]["train"] > 0) == (r["method"] != "none"), r
    assert plan["seconds"] == pytest.approx(sum(r["seconds"] for r in plan["runs"]))
    assert "this machine" in plan["how"]
    # The steps and FLOPs per step a real run records (a FLOP budget: its steps depend on its batches)
    planned = {r["name"]: r for r in plan["runs"]}
    for _label, raw in run_configs(cc, str(path)):
        if raw["name"] not in ("lora-s1", "prompt_tuning-s0"):
            continue
        real = RunSummary.read(RunDir(train(load_config(None, base=raw))).summary)
        r = planned[raw["name"]]
        assert r["steps"] == real.steps >= 2 and r["trainable"] == real.trainable_params, r
        assert r["flops_per_step"] == pytest.approx(real.flops_per_step, rel=1e-12)


def test_the_text_plan_shows_the_lr_search_on_the_first_seed_and_costs_it_more(tmp_path, copy_task, capsys):
    exp = experiment(tmp_path, copy_task, seeds=[0, 1], methods=[{"name": "lora", "rank": 4}])
    text = exp.read_text().replace("lr_search: 'off'\n", "").replace("lr_search: off\n", "")
    exp.write_text(text)
    assert main(["compare", str(exp), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "lr search on this seed" in out and "rungs at 0.333" in out
    assert "estimated wall time" in out and "this machine" in out
    assert not (tmp_path / "runs").exists()


def test_successive_halving_costs_what_the_lr_search_says():
    # 3 values to a third of the budget, the best one on to the end: 1.67 runs, 4 processes, 3 rung stops
    trained, started, stops = search_shape(3, [1 / 3])
    assert trained == pytest.approx(3 / 3 + 2 / 3) and started == 4 and stops == 3
    assert search_shape(9, [0.1, 0.5])[:2] == (pytest.approx(9 * 0.1 + 3 * 0.4 + 0.5), 13)


def test_check_recognises_an_experiment_file(tmp_path, copy_task, capsys):
    path = experiment(tmp_path, copy_task)
    assert main(["check", str(path)]) == 0
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines in a log
    assert "valid experiment: 5 runs" in err and "zero_shot, lora, prompt_tuning" in err
    assert not (tmp_path / "runs").exists()


def test_a_step_caught_by_a_burst_counts_for_nothing():
    # Four steps near 1 s and one 6 s step (another process took the cores): the mean would say 2 s
    assert typical([1.0, 1.1, 0.9, 6.0, 1.0]) == pytest.approx(1.0)
    assert typical([2.0]) == 2.0


def test_steps_are_timed_until_enough_steps_and_seconds_and_no_more_than_the_cap():
    timing = Timing(min_steps=3, min_seconds=2.0, max_steps=6)
    assert not timing.enough([1.0, 1.0])  # seconds enough, steps not
    assert timing.enough([1.0, 1.0, 1.0])
    assert not timing.enough([0.1] * 5)  # steps enough, seconds not
    assert timing.enough([0.1] * 6)  # the cap


def test_the_decode_per_token_is_fitted_to_the_medians_of_repeated_generations():
    # 1 token in 0.5 s, 17 in 2.1 s: 0.1 s a further token; one 17-token repeat slowed to 9 s by a burst
    samples = [(1, 0.5), (17, 2.1), (1, 0.6), (17, 9.0), (1, 0.5), (17, 2.1)]
    first, per_token = decode_fit(samples)
    assert per_token == pytest.approx(0.1) and first == pytest.approx(0.5)
    # Rows that all ended early decode fewer tokens than asked: the fit uses the tokens decoded
    first, per_token = decode_fit([(1, 1.0), (5, 1.8), (9, 2.6)])
    assert per_token == pytest.approx(0.2) and first == pytest.approx(1.0)
    assert decode_fit([(1, 0.7), (1, 0.9)]) == (pytest.approx(0.8), 0.0)  # one length: no slope


def test_runs_differing_in_seed_or_lr_share_one_probe_and_every_method_one_base_model(tmp_path, copy_task, monkeypatch):
    methods = [
        {"label": "zero_shot", "name": "none"},
        {"label": "lora-a", "name": "lora", "rank": 4, "dropout": 0.0},
        {"label": "lora-b", "name": "lora", "rank": 4, "dropout": 0.0, "train": {"lr": 0.1}},
    ]
    path = experiment(tmp_path, copy_task, methods=methods, seeds=[0, 1])
    calls, loads = [], []
    real_probe, real_load = probe_module.probe, probe_module.load_as_trained
    monkeypatch.setattr(probe_module, "probe", lambda cfgs, *a, **k: calls.append(cfgs) or real_probe(cfgs, *a, **k))
    monkeypatch.setattr(probe_module, "load_as_trained", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(probe_module, "startup_seconds", lambda: 1.0)  # a process start-up: seconds not needed here
    fits, real_fit = [], probe_module.decode_fit
    monkeypatch.setattr(probe_module, "decode_fit", lambda samples: fits.append(samples) or real_fit(samples))
    fast = Timing(min_steps=1, min_seconds=0.0, max_steps=1)
    plan = make_plan(path, timing=fast)
    # each probe generated to 1 and to 8 tokens (the copy task's max_new_tokens) 3 times, no row ending early
    assert [sorted(n for n, _ in samples) for samples in fits] == [[1, 1, 1, 8, 8, 8]] * 2
    assert sorted(len(c) for c in calls) == [1, 4]  # zero_shot's one run; lora-a and lora-b's 4 runs
    assert len(loads) == 1  # loaded once, copied for each method
    by_name = {r.name: r for r in plan.runs}
    assert by_name["lora-a-s0"].steps == by_name["lora-b-s0"].steps > 0
    assert by_name["lora-a-s0"].trainable == by_name["lora-b-s1"].trainable > 0
    assert plan.machine["probes"] == 2 and plan.machine["timed_steps"] == [1]


def test_a_release_memory_run_is_probed_last_with_the_allocator_threshold_held_as_the_run_holds_it(
    tmp_path, copy_task, monkeypatch
):
    from peftlab.comparison import plan as plan_module

    methods = [
        {"label": "lean", "name": "lora", "rank": 4, "dropout": 0.0, "train": {"release_memory": True}},
        {"label": "zero_shot", "name": "none"},
        {"label": "lora", "name": "lora", "rank": 4, "dropout": 0.0},
    ]
    path = experiment(tmp_path, copy_task, methods=methods, seeds=[0])
    events = []
    real_probe = probe_module.probe
    monkeypatch.setattr(
        probe_module, "probe", lambda cfgs, *a, **k: events.append(cfgs[0].label) or real_probe(cfgs, *a, **k)
    )
    # the real hold would slow every later test in this process: record the call instead
    monkeypatch.setattr(plan_module, "hold_mmap_threshold", lambda: events.append("hold") or True)
    monkeypatch.setattr(probe_module, "startup_seconds", lambda: 1.0)
    plan = make_plan(path, timing=Timing(min_steps=1, min_seconds=0.0, max_steps=1))
    assert events == ["zero_shot", "lora", "hold", "lean"]
    assert {r.name for r in plan.runs} == {"lean-s0", "zero_shot-s0", "lora-s0"}
    assert all(r.seconds and r.seconds > 0 for r in plan.runs)
