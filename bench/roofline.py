"""Roofline: the FLOP/s a peftlab training step achieves, as a fraction of this machine's matmul peak.

    .venv/bin/python bench/roofline.py [--model smollm2-135m] [--method lora] [--batch 8] [--steps 6]
        [--repeats 3] [--threads N] [--out runs/bench/roofline.json]

The peak is measured here, in the same run: large square matmuls in fp32 on CPU (bf16 on a GPU),
the best size's median. The step is peftlab's: the loss at labelled positions (Causal.loss_sum, models/causal.py),
backward, gradient clipping and AdamW, on real DialogSum training batches (first --batch x --steps
examples, grouped by length as training groups them), with FLOPs from the analytical count
(peftlab.flops, exact against torch's FlopCounterMode). Peak and step measurements alternate for
--repeats rounds; the fraction is the median of the per-round ratios. The first step of each round
warms up and is not timed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import cpu_name

from peftlab.batching import EpochSampler
from peftlab.config import MethodConfig, ModelConfig, TaskConfig
from peftlab.flops import StepFlops
from peftlab.methods import get_method, method_options, trainable_parameters
from peftlab.models import load_backbone
from peftlab.models.kind import output_head
from peftlab.tasks.base import build_task
from peftlab.tasks.catalog import resolve_task

SIZES = (1024, 2048, 4096)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> dict[int, float]:
    """FLOP/s of n x n @ n x n for each size: median over repeats filling ~``seconds`` each."""
    out = {}
    for n in SIZES:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up
        sync(device)
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds / len(SIZES) or len(times) < 3:
            t = time.perf_counter()
            a @ b
            sync(device)
            times.append(time.perf_counter() - t)
        out[n] = 2 * n**3 / statistics.median(times)
    return out


def step_batches(bb, args) -> list[dict]:
    task_cfg = TaskConfig.model_validate(resolve_task({"name": "dialogsum", "data_dir": args.data}, "bench"))
    examples = build_task(task_cfg).split("train")[: args.batch * args.steps]
    order = EpochSampler(len(examples), 0, [len(e.prompt) + len(e.target) for e in examples], args.batch).order(0)
    feats = [
        bb.encode(examples[i].prompt, examples[i].target, task_cfg.max_source_tokens, task_cfg.max_target_tokens)
        for i in order
    ]
    return [bb.collate(feats[j : j + args.batch]) for j in range(0, len(feats), args.batch)]


def time_steps(bb, batches, optimizer, params, head, device, autocast) -> list[float]:
    """Seconds of each training step after the first (warm-up)."""
    times = []
    for i, cpu_batch in enumerate(batches):
        batch = {k: v.to(device) for k, v in cpu_batch.items()}
        sync(device)
        t = time.perf_counter()
        with autocast():
            loss = bb.kind.loss_sum(bb.model, head, batch) / bb.kind.labelled_tokens(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if i:
            times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="lora", help="a peftlab method name (default options), e.g. lora, full")
    ap.add_argument("--data", default="../shared/data/dialogsum")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6, help="steps per round; the first warms up")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default="runs/bench/roofline.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    # fp32 on CPU (bf16 matmuls are ~50x slower on CPUs without AMX), bf16 autocast on a GPU, as training does.
    peak_dtype = torch.bfloat16 if cuda else torch.float32

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    bb = load_backbone(ModelConfig(name=args.model, dtype="float32"), device=device, log=log)
    method = get_method(args.method)
    bb.model = method.apply(bb.model, method_options(MethodConfig(name=args.method)))
    bb.model.to(device).train()
    params = list(trainable_parameters(bb.model).values())
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    head = output_head(bb.model)
    count = StepFlops(bb.model, bb.is_seq2seq)
    batches = step_batches(bb, args)
    flops = [count(b) for b in batches[1:]]

    rounds = []
    for r in range(args.repeats):
        log(f"round {r + 1}/{args.repeats}: matmul peak")
        peak = matmul_peak(device, peak_dtype)
        log(f"round {r + 1}/{args.repeats}: {len(batches)} training steps")
        times = time_steps(bb, batches, optimizer, params, head, device, autocast)
        achieved = sum(flops) / sum(times)
        rounds.append(
            {
                "peak_flops_per_s": peak,
                "step_seconds": times,
                "achieved_flops_per_s": achieved,
                "fraction": achieved / max(peak.values()),
            }
        )
        log(
            f"  peak {max(peak.values()) / 1e9:.1f} GFLOP/s, step {achieved / 1e9:.1f} GFLOP/s "
            f"({100 * rounds[-1]['fraction']:.1f}%)"
        )

    fraction = statistics.median(r["fraction"] for r in rounds)
    peak = statistics.median(max(r["peak_flops_per_s"].values()) for r in rounds)
    achieved = statistics.median(r["achieved_flops_per_s"] for r in rounds)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches[1:])
    step_s = statistics.median(t for r in rounds for t in r["step_seconds"])
    result = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if cuda else ""),
        "torch": torch.__version__,
        "model": args.model,
        "method": args.method,
        "batch": args.batch,
        "peak_dtype": str(peak_dtype).removeprefix("torch."),
        "peak_flops_per_s": peak,
        "achieved_flops_per_s": achieved,
        "fraction_of_peak": fraction,
        "median_step_seconds": step_s,
        "flops_per_step": statistics.median(flops),
        "real_tokens_per_step": tokens / len(flops),
        "rounds": rounds,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"Command: `{result['command']}` ({result['date']}, {result['machine']}, torch {result['torch']})\n")
    print(
        "| model | method | batch | step FLOPs | median step s | achieved | matmul peak "
        f"({result['peak_dtype']}) | fraction of peak |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.model} | {args.method} | {args.batch} | {result['flops_per_step'] / 1e12:.2f} T | {step_s:.2f} | "
        f"{achieved / 1e9:.1f} GFLOP/s | {peak / 1e9:.1f} GFLOP/s | **{100 * fraction:.0f}%** |"
    )


if __name__ == "__main__":
    main()
