"""LoRA's fused_add against peft's matmul, scale and add of the update: one process, two models, alternating.

    .venv/bin/python bench/fused_add.py [--batch 8] [--steps 4] [--rounds 3] [--threads N]
        [--out runs/bench/fused_add.json]

Two copies of SmolLM2-135M with the same all-linear LoRA (r16, alpha 32, dropout 0.05, LoRA's other
defaults), one with ``fused_add`` (methods/lora_fused_add.py), one without, the same starting weights
and optimizer. Each round trains both, one after the other, on the same DialogSum batches (the first
--batch x --steps training examples grouped by length, as roofline.py takes them), the order flipping
every round so that a slow spell of the machine hits both alike; the first step of each model warms up
and is not timed. The table gives each one's median step seconds, the median per-round ratio, and
whether the two gave the same losses to the bit at every step (the default scaling alpha / rank = 2
is exact, so they should on CPUs whose addmm accumulates as their mm does). In fp32 unless
--precision says otherwise: the fused path stands aside under autocast. Progress goes to stderr, the
Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import cpu_name
from roofline import log, step_batches

from peftlab.config import MethodConfig, ModelConfig
from peftlab.measure.precision import PRECISIONS, autocast, compute_dtype, store_frozen_linears
from peftlab.methods import get_method, method_options, trainable_parameters
from peftlab.models import load_backbone
from peftlab.models.kind import output_head
from peftlab.models.swiglu import lean_swiglu

VARIANTS = {"fused_add": True, "peft_add": False}


def build(bb, fused: bool, dtype):
    """A copy of the backbone with LoRA applied (fused_add on or off) and its optimizer."""
    model = copy.deepcopy(bb.model)
    lora = get_method("lora")
    model = lora.apply(model, method_options(MethodConfig(name="lora", fused_add=fused)))
    model.train()
    store_frozen_linears(model, dtype)
    params = list(trainable_parameters(model).values())
    return model, params, torch.optim.AdamW(params, lr=1e-4)


def steps(bb, model, params, optimizer, batches, dtype, seed: int) -> tuple[list[float], list[float]]:
    """Seconds of each step after the first, and every step's loss; the dropout draws from ``seed``."""
    torch.manual_seed(seed)  # both models draw the same masks in a round
    head, seconds, losses = output_head(model), [], []
    for i, batch in enumerate(batches):
        t = time.perf_counter()
        with autocast(torch.device("cpu"), dtype):
            loss = bb.kind.loss_sum(model, head, batch) / bb.kind.labelled_tokens(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:
            seconds.append(time.perf_counter() - t)
        losses.append(loss.item())
    return seconds, losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/dialogsum")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4, help="steps per model per round; the first warms up")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--out", default="runs/bench/fused_add.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = compute_dtype(args.precision, torch.device("cpu"))
    bb = load_backbone(ModelConfig(name="smollm2-135m", dtype="float32"), device=torch.device("cpu"), log=log)
    lean_swiglu(bb.model)  # as training does (training/run_model.prepare)
    batches = step_batches(bb, args)
    models = {name: build(bb, fused, dtype) for name, fused in VARIANTS.items()}
    models["peft_add"][0].load_state_dict(models["fused_add"][0].state_dict())  # the same starting weights
    rounds = []
    for r in range(args.rounds):
        rnd = {}
        for name in VARIANTS if r % 2 == 0 else list(VARIANTS)[::-1]:
            seconds, losses = steps(bb, *models[name], batches, dtype, seed=r)
            rnd[name] = {"step_seconds": seconds, "losses": losses}
            log(f"round {r + 1}/{args.rounds} {name:9s} median step {statistics.median(seconds):.2f} s")
        rounds.append(rnd)
    report(args, rounds, dtype)


def report(args, rounds: list[dict], dtype) -> None:
    med = {n: statistics.median(s for r in rounds for s in r[n]["step_seconds"]) for n in VARIANTS}
    ratios = [
        statistics.median(r["peft_add"]["step_seconds"]) / statistics.median(r["fused_add"]["step_seconds"])
        for r in rounds
    ]
    same = all(r["fused_add"]["losses"] == r["peft_add"]["losses"] for r in rounds)
    result = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "compute_dtype": str(dtype or torch.float32).removeprefix("torch."),
        "median_step_seconds": med,
        "ratio_per_round": ratios,
        "same_losses": same,
        "rounds": rounds,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"Command: `{result['command']}` ({result['date']}, {result['machine']}, torch {result['torch']})\n")
    print("| LoRA's update | median step s | peft_add / fused_add (rounds) | same losses |")
    print("|---|---:|---:|---|")
    shown = ", ".join(f"{x:.2f}" for x in ratios)
    print(f"| peft's matmul, scale, add | {med['peft_add']:.2f} | | |")
    print(
        f"| fused_add (addmm) | {med['fused_add']:.2f} | **{statistics.median(ratios):.2f}x** ({shown}) | "
        f"{'yes, every step' if same else 'no'} |"
    )


if __name__ == "__main__":
    main()
