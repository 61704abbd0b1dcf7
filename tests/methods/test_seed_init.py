"""A method's new parameters start from the run seed: the same seed gives the same start, another
seed another one (several seeds must measure the spread of initialisations, not one start replayed).

train.py seeds every RNG with the run seed (seed_everything) after the model loads and before the
method is applied; here the same order, on the tiny models."""

import pytest
import torch

from peftlab.methods import get_method, trainable_parameters
from peftlab.models.tiny import tiny_model
from peftlab.training.train_state import seed_everything

CASES = [
    ("tiny-llama", "prefix_tuning", {"num_virtual_tokens": 3}),  # init from activations
    ("tiny-gpt-neo", "prefix_tuning", {"num_virtual_tokens": 3}),  # init from activations
    ("tiny-llama", "prefix_tuning", {"num_virtual_tokens": 3, "init": "random"}),
    ("tiny-llama", "prefix_tuning", {"num_virtual_tokens": 3, "prefix_projection": True}),
    ("tiny-t5", "prefix_tuning", {"num_virtual_tokens": 3}),
    ("tiny-llama", "prompt_tuning", {"num_virtual_tokens": 3}),  # sampled vocabulary
    ("tiny-t5", "prompt_tuning", {"num_virtual_tokens": 3, "init": "random"}),
    ("tiny-llama", "lora", {"rank": 2}),
    ("tiny-t5", "parallel_adapter", {}),
    ("tiny-llama", "hybrid", {"methods": [{"name": "prefix_tuning", "num_virtual_tokens": 3}, {"name": "lora"}]}),
]


def initial(arch: str, name: str, options: dict, seed: int) -> dict[str, torch.Tensor]:
    model, _ = tiny_model(arch)
    seed_everything(seed)
    method = get_method(name)
    model = method.apply(model, method.config_cls(**options))
    return {n: p.detach().clone() for n, p in trainable_parameters(model).items()}


@pytest.mark.parametrize("arch,name,options", CASES, ids=[f"{a}-{n}-{'-'.join(o) or 'default'}" for a, n, o in CASES])
def test_initialisation_follows_the_run_seed(arch, name, options):
    a, again, b = (initial(arch, name, options, seed) for seed in (0, 0, 1))
    assert a.keys() == again.keys() == b.keys() and a
    assert all(torch.equal(a[n], again[n]) for n in a), "the same seed must give the same start"
    # Zero-initialised halves (lora_B, an adapter's Up) stay equal; the rest must move with the seed.
    differ = [n for n in a if not torch.equal(a[n], b[n])]
    assert differ, f"{name} on {arch}: seeds 0 and 1 give the same initial parameters"
    random_parts = [n for n in a if a[n].abs().sum() > 0 and a[n].std() > 0]
    assert set(random_parts) <= set(differ), f"unchanged across seeds: {sorted(set(random_parts) - set(differ))}"


def test_a_training_run_on_a_tiny_model_starts_from_its_own_seed(tmp_path, copy_task):
    """train() seeds first and loads the model second: loading a tiny model must not reset the RNG."""
    from safetensors.torch import load_file

    from peftlab.training.train import train
    from tests.test_train import make_config

    adapters = []
    for seed in (0, 1):
        (tmp_path / str(seed)).mkdir()
        cfg = make_config(tmp_path / str(seed), copy_task, "tiny-llama", max_steps=1, eval_every=None)
        cfg.seed = seed
        run_dir = train(cfg)
        adapters.append(load_file(run_dir / "adapter" / "adapter_model.safetensors"))
    a_names = [k for k in adapters[0] if "lora_A" in k]
    assert a_names and not any(torch.equal(adapters[0][k], adapters[1][k]) for k in a_names)
