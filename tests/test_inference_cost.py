"""Inference cost (inference_cost.py): prefill and decode timed apart at a fixed token count, and peak
memory, batch 1 and 16, unmerged and merged, measured alone, in summary.json and the leaderboard."""

import gc
import json

import torch
import yaml

from peftlab.config import load_config
from peftlab.measure import inference_cost
from peftlab.measure.inference_cost import measure, timed_generation
from peftlab.methods import get_method
from peftlab.models.decode import greedy
from peftlab.training.train import train
from tests.conftest import fixed_batch
from tests.methods.harness import logits, setup, train_steps


def test_merging_folds_the_adapter_into_the_same_model_without_changing_its_function():
    bb, method, cfg = setup("tiny-llama", "lora", rank=4, dropout=0.0)
    train_steps(bb, 3, 1e-2)
    batch = fixed_batch(bb)
    before = logits(bb.model, batch)
    cost = measure(bb, bb.model, method.merges(cfg), ["Repeat: cat", "Repeat: a dog"], new_tokens=6)
    after = logits(bb.model, batch)  # merged in place: W + BA in one weight, the same function
    assert (after - before).abs().max() < 1e-4, (after - before).abs().max()
    assert not any("lora" in name for name, _ in bb.model.named_parameters())
    assert set(cost.unmerged) == set(cost.merged) == {"batch_1", "batch_16"}
    points = [*cost.unmerged.values(), *cost.merged.values()]
    assert all(p.decode_ms_per_token > 0 and p.prefill_ms_per_prompt > 0 and p.peak_memory_bytes > 0 for p in points)
    assert cost.new_tokens == 6
    assert cost.unmerged["batch_1"].samples == 2  # each prompt timed alone
    assert cost.unmerged["batch_16"].samples == inference_cost.BATCH_REPEATS


def _live(cls) -> int:
    gc.collect()
    return sum(type(o) is cls for o in gc.get_objects())


def test_the_merged_model_is_timed_with_no_second_model_resident(monkeypatch):
    bb, method, cfg = setup("tiny-llama", "lora", rank=4, dropout=0.0)
    train_steps(bb, 2, 1e-2)
    base_cls = type(bb.model.get_base_model())
    seen = []
    real_points = inference_cost._points

    def counting(backbone, model, prompts, new_tokens):
        seen.append(_live(base_cls))  # transformers models of this class alive while this point is timed
        return real_points(backbone, model, prompts, new_tokens)

    monkeypatch.setattr(inference_cost, "_points", counting)
    cost = measure(bb, bb.model, True, ["Repeat: cat"], new_tokens=3)
    assert cost.merged is not None and len(seen) == 2
    assert seen[1] == seen[0]  # merged timing: the same one model, not a copy beside the original


def test_every_sequence_decodes_the_fixed_count_with_eos_ignored():
    bb, _, _ = setup("tiny-llama", "lora", rank=4)
    bb.model.eval()
    ids, mask = bb.pad_prompts([bb.prompt_ids("Repeat: cat"), bb.prompt_ids("Repeat: a dog")])
    first = greedy(bb.model, ids, mask, max_new_tokens=1, eos_token_id=0, pad_token_id=0)
    eos = first[0][0]  # the token row 0 emits first: as EOS, generation would stop right there
    assert greedy(bb.model, ids, mask, max_new_tokens=7, eos_token_id=eos, pad_token_id=0)[0] == [eos]
    timing = timed_generation(bb.model, ids, mask, new_tokens=7)
    assert timing.tokens.shape == (2, 7) and timing.tokens[0, 0] == eos
    unstopped = greedy(bb.model, ids, mask, max_new_tokens=7, eos_token_id=-1, pad_token_id=0)
    assert timing.tokens.tolist() == unstopped  # the same greedy tokens, only never cut at EOS
    assert timing.rows == 2 and timing.prompt_tokens == int(mask.sum())


class FakeClock:
    """perf_counter for the test: prefill costs 1 ms per real prompt token, a decode step 2 ms per row."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_prefill_and_decode_are_timed_apart_and_per_token(monkeypatch):
    bb, _, _ = setup("tiny-llama", "lora", rank=4)
    clock, real_decoder_for = FakeClock(), inference_cost.decoder_for
    steps = []

    def slow_decoder(model):
        decoder = real_decoder_for(model)
        prefill, step = decoder.prefill, decoder.step

        def timed_prefill(ids, mask):
            clock.now += 0.001 * int(mask.sum())
            return prefill(ids, mask)

        def timed_step(tokens):
            clock.now += 0.002 * tokens.shape[0]
            steps.append(tokens.shape[0])
            return step(tokens)

        decoder.prefill, decoder.step = timed_prefill, timed_step
        return decoder

    monkeypatch.setattr(inference_cost, "decoder_for", slow_decoder)
    monkeypatch.setattr(inference_cost.time, "perf_counter", clock)
    prompts = ["Repeat: cat", "Repeat: a long dog with a hat"]
    cost = measure(bb, bb.model, False, prompts, new_tokens=5)
    one, sixteen = cost.unmerged["batch_1"], cost.unmerged["batch_16"]
    assert one.decode_ms_per_token == sixteen.decode_ms_per_token == 2.0  # the prompt is not in it
    assert one.prefill_ms_per_prompt_token == sixteen.prefill_ms_per_prompt_token == 1.0
    lengths = sorted(len(bb.prompt_ids(p)) for p in prompts)
    assert one.prefill_ms_per_prompt == sum(lengths) / 2  # median of the two prompts' token counts in ms
    assert steps.count(1) == 2 * 4 + 1  # 4 steps per 5-token prompt, plus the 2-token warm-up's one


def test_a_method_that_cannot_merge_is_measured_unmerged_only():
    bb, method, cfg = setup("tiny-t5", "prompt_tuning", num_virtual_tokens=4)
    assert not method.merges(cfg)
    cost = measure(bb, bb.model, method.merges(cfg), ["Repeat: cat"], new_tokens=4)
    assert cost.merged is None and cost.unmerged["batch_16"].decode_ms_per_token > 0
    assert not get_method("peft").merges(get_method("peft").config_cls(type="P_TUNING", num_virtual_tokens=4))


def _run_config(tmp_path, copy_task, method: dict, name: str = "copy-lora", label: str = "lora") -> object:
    cfg = {
        "name": name,
        "label": label,
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": method,
        "task": copy_task,
        "train": {"max_steps": 2, "batch_size": 4},
        "eval": {"batch_size": 4, "inference_cost": True},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def test_a_run_with_eval_inference_cost_records_it_and_the_leaderboard_shows_it(tmp_path, copy_task):
    from peftlab.report import write_report

    run_dir = train(_run_config(tmp_path, copy_task, {"name": "lora", "rank": 4}))
    inference = json.loads((run_dir / "summary.json").read_text())["inference"]
    assert inference["merged"]["batch_1"]["decode_ms_per_token"] > 0
    assert inference["new_tokens"] == inference_cost.NEW_TOKENS
    assert inference["seconds"] > 0  # the measurement's own time, for the report's time split
    write_report(tmp_path / "runs")
    md = (tmp_path / "runs" / "leaderboard.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| label"))
    assert header.endswith("| decode ms/token (batch 1) | prefill ms/prompt (batch 1) |")
    row = next(line for line in md.splitlines() if line.startswith("| lora"))
    assert row.split("|")[-3].strip() == f"{inference['merged']['batch_1']['decode_ms_per_token']:.1f}"
    assert row.split("|")[-2].strip() == f"{inference['merged']['batch_1']['prefill_ms_per_prompt']:.1f}"
    assert "decode latency (batch 1): up to" not in md  # one label: no frontier to read
    assert "shared with other runs" not in md  # a run alone on its machine: no flag


def test_training_state_is_freed_before_inference_is_measured(tmp_path, copy_task, monkeypatch):
    seen = {}
    real_measure = inference_cost.measure

    def inspecting(backbone, model, mergeable, prompts, **kw):
        gc.collect()
        mine = {id(p) for p in model.parameters()}
        optimizers = [o for o in gc.get_objects() if issubclass(type(o), torch.optim.Optimizer)]
        seen["optimizers"] = [o for o in optimizers if any(id(p) in mine for g in o.param_groups for p in g["params"])]
        seen["grads"] = [n for n, p in model.named_parameters() if p.grad is not None]
        return real_measure(backbone, model, mergeable, prompts, **kw)

    monkeypatch.setattr(inference_cost, "measure", inspecting)
    train(_run_config(tmp_path, copy_task, {"name": "full"}, name="copy-full", label="full"))
    assert seen["optimizers"] == []  # AdamW's moments of every weight: not resident while measuring
    assert seen["grads"] == []


OLD_INFERENCE = {  # summary.json's inference as written before prefill and decode were timed apart
    "max_new_tokens": 8,
    "unmerged": {"batch_1": {"ms_per_token": 9.0, "peak_memory_bytes": 1000}, "batch_16": {"ms_per_token": 2.0}},
    "merged": {"batch_1": {"ms_per_token": 8.0}, "batch_16": {"ms_per_token": 1.5}},
    "seconds": 10,
}


def _with_inference(run_dir, inference: dict, concurrency: int = 1) -> None:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    summary["inference"] = inference
    summary["launch"] = {"launcher": "local", "concurrency": concurrency}
    path.write_text(json.dumps(summary))


def test_an_older_summary_still_loads_and_its_mixed_figure_is_named_not_shown(tmp_path):
    from peftlab.report import write_report
    from peftlab.rundir.summary import RunSummary
    from tests.report.fakes import fake_run

    run = fake_run(tmp_path, "old", label="old", method="lora", seed=0, example_scores=[1.0, 0.0])
    _with_inference(run, OLD_INFERENCE)
    summary = RunSummary.from_json(json.loads((run / "summary.json").read_text()))
    assert summary.inference.merged["batch_1"].ms_per_token == 8.0 and not summary.inference.prefill_apart
    assert summary.ms_per_token is None  # not shown as a decode figure: it mixed prompt processing in
    write_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "inference cost of old recorded before prefill and decode were timed apart" in md


def test_inference_figures_measured_beside_other_cpu_runs_are_flagged(tmp_path):
    from peftlab.report import write_report
    from tests.report.fakes import fake_run

    point = {"prefill_ms_per_prompt": 20.0, "prefill_ms_per_prompt_token": 0.5, "decode_ms_per_token": 7.0}
    new = {"new_tokens": 32, "unmerged": {"batch_1": point, "batch_16": point}, "seconds": 5}
    for name, concurrency in (("alone", 1), ("shared", 2)):
        run = fake_run(tmp_path, name, label=name, method="lora", seed=0, example_scores=[1.0, 0.0])
        _with_inference(run, new, concurrency)
    write_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith(("| alone", "| shared"))}
    assert rows["shared"].split("|")[-3].strip() == "7.0 *" and rows["shared"].split("|")[-2].strip() == "20.0 *"
    assert rows["alone"].split("|")[-3].strip() == "7.0"
    assert "* inference figure measured on a CPU shared with other runs" in md
