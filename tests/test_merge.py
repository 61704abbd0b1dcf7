"""`peftlab merge`: a LoRA or IA3 run folded into the base weights is a plain model with the same logits."""

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from peftlab.cli import main
from peftlab.config import dump_config
from peftlab.evaluation.evaluate import load_run_config
from peftlab.methods import get_method, method_options
from peftlab.methods.peft_tuner import MERGEABLE
from peftlab.models.backbone import Backbone
from peftlab.models.tiny import tiny_model
from peftlab.training.train import train
from tests.conftest import fixed_batch
from tests.methods.harness import logits, setup, train_steps
from tests.test_train import make_config


@pytest.mark.parametrize(
    "arch,method,auto",
    [
        ("tiny-llama", {"name": "lora", "rank": 8, "dropout": 0.0}, AutoModelForCausalLM),
        ("tiny-t5", {"name": "lora", "rank": 8, "dropout": 0.0}, AutoModelForSeq2SeqLM),
        ("tiny-gpt-neo", {"name": "ia3"}, AutoModelForCausalLM),
    ],
)
def test_merged_run_matches_the_unmerged_run(tmp_path, copy_task, arch, method, auto):
    run_dir = train(make_config(tmp_path, copy_task, arch, method=method, max_steps=3, eval_every=None))
    out = tmp_path / "merged"
    assert main(["merge", str(run_dir), str(out)]) == 0
    assert not list(out.rglob("*.bin")) and (out / "model.safetensors").is_file()
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()

    cfg = load_run_config(run_dir)
    base, tok = tiny_model(arch)
    unmerged = get_method(method["name"]).load(base, run_dir / "adapter", method_options(cfg.method)).eval()
    batch = fixed_batch(Backbone(model=base, tokenizer=tok, source=arch))
    merged = auto.from_pretrained(str(out)).eval()
    ref, got = logits(unmerged, batch), logits(merged, batch)
    assert (got - ref).abs().max().item() <= 1e-4
    # the adapter did change the model (so the comparison is not base vs base)
    assert (ref - logits(tiny_model(arch)[0], batch)).abs().max().item() > 1e-3


def test_merge_refuses_methods_without_weights_to_fold_into(tmp_path, copy_task, capsys):
    cfg = make_config(tmp_path, copy_task, method={"name": "parallel_adapter"})
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    assert main(["merge", str(run_dir), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'parallel_adapter' run cannot be merged" in err and "lora and ia3 runs and peft types" in err
    assert not (tmp_path / "out").exists()


def test_merge_refuses_a_non_empty_output_folder(tmp_path, copy_task, capsys):
    cfg = make_config(tmp_path, copy_task)
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert main(["merge", str(run_dir), str(tmp_path / "out")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_merge_help_says_what_can_be_merged(capsys):
    with pytest.raises(SystemExit) as e:
        main(["merge", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal width
    assert (
        "merge [-h] [--trust-remote-code] RUN_DIR OUT_DIR" in out
        and "OUT_DIR" in out
        and "Only LoRA, IA3 and peft-type runs" in out
    )


@pytest.mark.parametrize("kind", sorted(MERGEABLE))
def test_each_mergeable_peft_type_folds_into_the_same_function(kind):
    options = {
        "ADALORA": {"init_r": 4, "target_r": 2, "total_step": 10},
        "OFT": {"r": 0, "oft_block_size": 4},
        "BOFT": {"boft_block_size": 4},
        "FOURIERFT": {"n_frequency": 16},
    }
    options = {"target_modules": "all-linear", **options.get(kind, {})} if kind != "LN_TUNING" else {}
    bb, method, cfg = setup("tiny-llama", "peft", type=kind, **options)
    assert method.merges(cfg)
    train_steps(bb, 3, 1e-2)
    batch = {k: v for k, v in fixed_batch(bb).items() if k != "labels"}
    ref = logits(bb.model.eval(), batch)
    assert (ref - logits(tiny_model("tiny-llama")[0], batch)).abs().max().item() > 1e-4  # it learned something
    merged = bb.model.merge_and_unload()
    assert not any("lora_" in n or "hada_" in n for n, _ in merged.named_parameters())
    assert (logits(merged, batch) - ref).abs().max().item() <= 1e-4


def test_a_peft_type_without_weights_to_fold_into_is_refused_by_type(tmp_path, copy_task, capsys):
    cfg = make_config(tmp_path, copy_task, method={"name": "peft", "type": "P_TUNING", "num_virtual_tokens": 4})
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    assert main(["merge", str(run_dir), str(tmp_path / "out")]) == 2
    assert "'peft type P_TUNING' run cannot be merged" in capsys.readouterr().err
