"""Step time of SmolLM2 LoRA steps: peftlab's fused dropout (`fused_dropout: true`) against peft's unfused.

`.venv/bin/python bench/lora_dropout_speed.py` from the repository root (reads ../shared/data/dialogsum):
LoRA r16 on q/k/v/o, dropout 0.05, bf16, batch 8, the first 24 DialogSum training dialogues but the
longest batch, three interleaved rounds of each in one process (the same machine state for both);
prints each round's seconds and the median ratio. Results: bench/RESULTS.md, "LoRA dropout folded
into lora_A".
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from memory_profile import apply_lora, batches  # noqa: E402  (bench/ is not a package)

from peftlab.config import ModelConfig
from peftlab.measure.precision import compute_dtype, store_frozen_linears
from peftlab.methods import trainable_parameters
from peftlab.models import load_backbone


def setup(dropout: str):
    """The bundled model with LoRA ("fused" or "unfused"), in bf16 as training holds it, and its optimizer."""
    bb = load_backbone(ModelConfig(name="smollm2-135m"), log=lambda *a: None)
    bb.model.float()
    bb.compute_dtype = compute_dtype("bf16", "cpu")
    bb.model = apply_lora(bb.model, dropout)
    store_frozen_linears(bb.model, bb.compute_dtype)
    return bb, torch.optim.AdamW(trainable_parameters(bb.model).values(), lr=2e-4)


def step(bb, opt, batch: dict) -> None:
    with bb.numerics():
        loss = bb.kind.loss_sum(bb.model, bb.model.get_output_embeddings(), batch)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def main() -> None:
    models = {d: setup(d) for d in ("fused", "unfused")}
    data = batches(models["fused"][0], 24)[1:]  # the longest batch left out: two batches of 8
    times: dict[str, list[float]] = {d: [] for d in models}
    for _ in range(3):
        for d, (bb, opt) in models.items():
            t0 = time.perf_counter()
            for batch in data:
                step(bb, opt, batch)
            times[d].append(time.perf_counter() - t0)
    print({d: [round(t, 2) for t in ts] for d, ts in times.items()})
    print(f"median fused / unfused: {statistics.median(times['fused']) / statistics.median(times['unfused']):.2f}")


if __name__ == "__main__":
    main()
