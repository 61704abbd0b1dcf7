"""`peftlab params`: parameter counts per module group, checked against hand computation on tiny-llama
(hidden 32, MLP 64, 2 layers, 4 query heads and 2 key/value heads of 8 dims, vocabulary 384, tied head)."""

import json

import pytest

from peftlab.cli import main
from peftlab.config import MethodConfig
from peftlab.errors import PeftlabError
from peftlab.inspect.params import group_of, method_params
from peftlab.methods import REGISTRY

HIDDEN, MLP, KV, LAYERS, VOCAB = 32, 64, 16, 2, 384


def lora(rank: int, fan_in: int, fan_out: int) -> int:
    return rank * (fan_in + fan_out)  # lora_A is rank x in, lora_B is out x rank


def test_lora_counts_are_two_r_in_plus_out_per_adapted_linear():
    r = method_params("tiny-llama", MethodConfig(name="lora", rank=8))
    attention = LAYERS * (lora(8, HIDDEN, HIDDEN) * 2 + lora(8, HIDDEN, KV) * 2)  # q, o; k, v
    mlp = LAYERS * (lora(8, HIDDEN, MLP) * 2 + lora(8, MLP, HIDDEN))  # gate, up; down
    g = r["groups"]
    assert (g["attention"]["trainable"], g["mlp"]["trainable"]) == (attention, mlp) == (3584, 4608)
    assert r["trainable"] == r["added"] == attention + mlp
    assert g["attention"]["total"] == LAYERS * (2 * HIDDEN * HIDDEN + 2 * HIDDEN * KV) + attention
    assert g["embeddings"] == {"total": VOCAB * HIDDEN, "added": 0, "trainable": 0}
    assert g["norms"]["total"] == (2 * LAYERS + 1) * HIDDEN and r["tied_head"] and g["head"]["total"] == 0
    assert sum(x["total"] for x in g.values()) == r["total"]
    # on disk: the float32 tensors, plus the safetensors header, adapter_config.json and peft's README.md
    assert 4 * r["trainable"] < r["adapter_bytes"] < 4 * r["trainable"] + 16_000


def test_soft_prompt_counts_as_virtual_tokens_and_none_trains_nothing():
    base = method_params("tiny-llama", MethodConfig(name="none"))
    assert base["trainable"] == base["added"] == 0 and base["total"] == 39_072 - 8192
    pt = method_params("tiny-t5", MethodConfig(name="prompt_tuning", num_virtual_tokens=5))
    assert pt["groups"]["virtual tokens"] == {"total": 5 * HIDDEN, "added": 5 * HIDDEN, "trainable": 5 * HIDDEN}
    assert pt["trainable"] == 5 * HIDDEN and not pt["tied_head"] and pt["groups"]["head"]["total"] == VOCAB * HIDDEN


def test_full_trains_everything_and_parallel_adapter_sits_beside_the_mlp():
    full = method_params("tiny-gpt-neo", MethodConfig(name="full"))
    assert full["trainable"] == full["total"] and full["added"] == 0
    pa = method_params("tiny-llama", MethodConfig(name="parallel_adapter", reduction_factor=4))
    bottleneck = HIDDEN // 4
    per_layer = HIDDEN * bottleneck + bottleneck + bottleneck * HIDDEN + HIDDEN  # Down and Up with biases
    assert pa["groups"]["mlp"]["trainable"] == pa["trainable"] == LAYERS * per_layer


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("model.layers.0.post_attention_layernorm.weight", "norms"),
        ("base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight", "attention"),
        ("transformer.h.0.attn.attention.k_proj.weight", "attention"),
        ("encoder.block.0.layer.1.DenseReluDense.wi_0.weight", "mlp"),
        ("shared.weight", "embeddings"),
        ("prompt_encoder.default.embedding.weight", "virtual tokens"),
        ("lm_head.weight", "head"),
        ("transformer.ln_f.bias", "norms"),
    ],
)
def test_groups_by_parameter_name(name, group):
    assert group_of(name) == group


def test_params_command_all_methods_json(capsys):
    assert main(["params", "tiny-llama", "--method", "all", "--json"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    # every method but BitFit, which needs biases tiny-llama lacks, and says so instead of failing the table
    assert [r["method"] for r in rows] == [name for name in REGISTRY if name != "bitfit"]
    assert "skipped method bitfit: the model has no bias terms (tiny-llama)" in " ".join(out.err.split())
    by = {r["method"]: r for r in rows}
    assert by["none"]["trainable"] == 0 and by["full"]["trainable"] == by["full"]["total"]
    assert by["lora"]["trainable"] == 2 * (3584 + 4608)  # default rank 16


def test_params_command_table_and_errors(capsys):
    assert main(["params", "tiny-llama", "--method", "lora", "--set", "method.rank=2"]) == 0
    assert "attention" in capsys.readouterr().err
    with pytest.raises(PeftlabError, match="only method options"):
        from peftlab.inspect.commands import method_config

        method_config("lora", ["train.lr=1"])
    assert main(["params", "tiny-llama", "--method", "lora", "--set", "method.rnak=2"]) == 2
    assert "did you mean 'rank'" in capsys.readouterr().err
    assert main(["params", "tiny-llama", "--method", "all", "--set", "method.rank=2"]) == 2
