"""A run folder written by an older peftlab (its config.yaml lacks keys added since) is still the
same run: finished runs stay finished in a comparison, and checkpoints resume."""

import yaml

from peftlab.config import ExperimentConfig, dump_config, same_config


def config() -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {"model": {"name": "tiny-llama"}, "task": {"name": "sql_demo"}, "train": {"max_steps": 3}}
    )


def test_a_config_without_keys_added_since_matches_when_they_take_their_defaults():
    cfg = config()
    older = yaml.safe_load(dump_config(cfg))
    del older["forgetting"], older["eval"]["inference_cost"]  # keys this release added
    assert same_config(cfg)(yaml.safe_dump(older, sort_keys=False))
    assert same_config(cfg)(dump_config(cfg))


def test_a_changed_value_or_an_unreadable_file_does_not_match():
    cfg = config()
    changed = yaml.safe_load(dump_config(cfg))
    changed["train"]["max_steps"] = 4
    assert not same_config(cfg)(yaml.safe_dump(changed))
    asked = yaml.safe_load(dump_config(cfg))
    asked["eval"]["inference_cost"] = True  # a new key set to other than its default: another run
    assert not same_config(cfg)(yaml.safe_dump(asked))
    assert not same_config(cfg)("model: [unclosed")
    assert not same_config(cfg)("no_such_key: 1\n")


def test_the_generation_batch_is_not_part_of_what_a_run_is():
    """eval.batch_size and eval.kv_cache_gb change how fast generation runs, not its tokens
    (tests/models/test_decode.py): a run finished at batch 16 is the run asked for at batch 64."""
    cfg = config()
    older = yaml.safe_load(dump_config(cfg))
    older["eval"]["batch_size"], older["eval"]["kv_cache_gb"] = 16, None
    del older["eval"]["share_prefix"]
    assert cfg.eval.batch_size == 64
    assert same_config(cfg)(yaml.safe_dump(older, sort_keys=False))
    older["eval"]["max_test"] = 10  # what is scored is part of it
    assert not same_config(cfg)(yaml.safe_dump(older, sort_keys=False))


def test_a_lora_run_written_before_the_dropout_defaults_changed_is_not_the_new_default():
    """LoRA's fast_dropout, fused_dropout and fused_add became on by default: a run's config records them,
    so a config.yaml without them (written before) reads as off, and is the same run only as off."""

    def lora(method: dict) -> ExperimentConfig:
        return ExperimentConfig.model_validate({**yaml.safe_load(dump_config(config())), "method": method})

    new = lora({"name": "lora", "rank": 4})
    assert new.method.options() == {"rank": 4, "fast_dropout": True, "fused_dropout": True, "fused_add": True}
    recorded = dump_config(new)
    before_add = recorded.replace("  fused_add: true\n", "")  # written after the dropouts changed, before fused_add
    old_text = before_add.replace("  fast_dropout: true\n", "").replace("  fused_dropout: true\n", "")
    assert "dropout: true" not in old_text and "fused_add" not in before_add
    assert not same_config(new)(old_text)  # trained with torch's draw: not the run asked for now
    assert not same_config(new)(before_add)  # trained with peft's add
    off = {"fast_dropout": False, "fused_dropout": False, "fused_add": False}
    assert same_config(lora({"name": "lora", "rank": 4, **off}))(old_text)
    assert same_config(lora({"name": "lora", "rank": 4, "fused_add": False}))(before_add)
    hybrid = lora({"name": "hybrid", "methods": [{"name": "lora", "rank": 4}, {"name": "prompt_tuning"}]})
    assert hybrid.method.options()["methods"][0] == {
        "name": "lora",
        "rank": 4,
        "fast_dropout": True,
        "fused_dropout": True,
        "fused_add": True,
    }
    assert hybrid.method.options()["methods"][1] == {"name": "prompt_tuning"}
    other = lora({"name": "prompt_tuning", "num_virtual_tokens": 4})  # other methods: nothing recorded
    assert other.method.options() == {"num_virtual_tokens": 4}
    assert same_config(other)(dump_config(other))
