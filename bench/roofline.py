"""Roofline: the FLOP/s a peftlab training step achieves, as a fraction of this machine's matmul peak.

    .venv/bin/python bench/roofline.py [--model smollm2-135m] [--method lora] [--option KEY=VALUE]
        [--batch 8] [--steps 6] [--repeats 3] [--threads N] [--precision auto] [--profile N]
        [--out runs/bench/roofline.json]

The peak is measured here, in the same run: large square matmuls in fp32, the best size's median, and
also in bf16 when the step computes in bf16 (--precision; auto resolves as training does:
precision.py). The step holds its frozen weights as training does (precision.store_frozen_linears).
The step is peftlab's: the loss at labelled positions (Causal.loss_sum, models/causal.py),
backward, gradient clipping and AdamW, on real DialogSum training batches (first --batch x --steps
examples, grouped by length as training groups them), with FLOPs from the analytical count
(peftlab.measure.flops, exact against torch's FlopCounterMode). Peak and step measurements alternate for
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
import yaml
from machine import cpu_name

from peftlab.config import MethodConfig, ModelConfig, TaskConfig
from peftlab.measure.flops import StepFlops
from peftlab.measure.precision import PRECISIONS, autocast, compute_dtype, store_frozen_linears
from peftlab.methods import get_method, method_options, trainable_parameters
from peftlab.models import load_backbone
from peftlab.models.kind import output_head
from peftlab.models.swiglu import lean_swiglu
from peftlab.tasks.base import build_task
from peftlab.tasks.catalog import resolve_task
from peftlab.training.batching import EpochSampler

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


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="lora", help="a peftlab method name (default options), e.g. lora, full")
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method option other than its default, as YAML (repeatable), e.g. --option fused_add=false",
    )
    ap.add_argument("--data", default="../shared/data/dialogsum")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6, help="steps per round; the first warms up")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="train.precision of the step (default: auto, as training)",
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after the rounds, profile two steps on the longest batch and print their N costliest ops to stderr",
    )
    ap.add_argument("--out", default="runs/bench/roofline.json")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = compute_dtype(args.precision, device)  # None: fp32, the weights' own
    # The target is a fraction of the fp32 peak; a step computing in bf16 is also set against the bf16 peak.
    peak_dtypes = [torch.float32] + ([torch.bfloat16] if dtype is torch.bfloat16 else [])

    bb = load_backbone(ModelConfig(name=args.model, dtype="float32"), device=device, log=log)
    lean_swiglu(bb.model)  # as training does (training/run_model.prepare)
    method = get_method(args.method)
    options = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.option)}
    bb.model = method.apply(bb.model, method_options(MethodConfig(name=args.method, **options)))
    bb.model.to(device).train()
    store_frozen_linears(bb.model, dtype)  # as training does (precision.py)
    params = list(trainable_parameters(bb.model).values())
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    head = output_head(bb.model)
    with autocast(device, dtype):  # the FLOP probe's forwards in the step's dtype, as training runs it
        count = StepFlops(bb.model, bb.is_seq2seq)
    batches = step_batches(bb, args)
    flops = [count(b) for b in batches[1:]]

    rounds = []
    for r in range(args.repeats):
        log(f"round {r + 1}/{args.repeats}: matmul peak")
        peaks = {str(d).removeprefix("torch."): max(matmul_peak(device, d).values()) for d in peak_dtypes}
        log(f"round {r + 1}/{args.repeats}: {len(batches)} training steps")
        times = time_steps(bb, batches, optimizer, params, head, device, lambda: autocast(device, dtype))
        achieved = sum(flops) / sum(times)
        rounds.append({"peak_flops_per_s": peaks, "step_seconds": times, "achieved_flops_per_s": achieved})
        log(f"  peaks {', '.join(f'{k} {v / 1e9:.1f}' for k, v in peaks.items())} GFLOP/s, step {achieved / 1e9:.1f}")
    report(args, rounds, flops, batches, dtype)
    if args.profile:
        profile_step(bb, batches, optimizer, params, head, device, lambda: autocast(device, dtype), args.profile)


def profile_step(bb, batches, optimizer, params, head, device, autocast, top: int) -> None:
    """torch.profiler's table of two steps on the first (longest) batch, ops by their own CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        time_steps(bb, batches[:1] * 2, optimizer, params, head, device, autocast)
    log(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def report(args, rounds: list[dict], flops: list[float], batches: list[dict], dtype) -> None:
    """The JSON (--out) and the Markdown row: fractions are medians of per-round ratios."""
    dtypes = list(rounds[0]["peak_flops_per_s"])
    fraction = {
        d: statistics.median(r["achieved_flops_per_s"] / r["peak_flops_per_s"][d] for r in rounds) for d in dtypes
    }
    peak = {d: statistics.median(r["peak_flops_per_s"][d] for r in rounds) for d in dtypes}
    achieved = statistics.median(r["achieved_flops_per_s"] for r in rounds)
    step_s = statistics.median(t for r in rounds for t in r["step_seconds"])
    cuda = torch.cuda.is_available()
    result = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if cuda else ""),
        "torch": torch.__version__,
        "model": args.model,
        "method": args.method,
        "options": args.option,
        "batch": args.batch,
        "compute_dtype": str(dtype or torch.float32).removeprefix("torch."),
        "peak_flops_per_s": peak,
        "achieved_flops_per_s": achieved,
        "fraction_of_peak": fraction,
        "median_step_seconds": step_s,
        "flops_per_step": statistics.median(flops),
        "real_tokens_per_step": sum(int(b["attention_mask"].sum()) for b in batches[1:]) / len(flops),
        "rounds": rounds,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"Command: `{result['command']}` ({result['date']}, {result['machine']}, torch {result['torch']})\n")
    print(
        "| model | method | batch | computes in | step FLOPs | median step s | achieved | matmul peak "
        "| fraction of peak |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for d in dtypes:
        print(
            f"| {args.model} | {args.method} | {args.batch} | {result['compute_dtype']} | "
            f"{result['flops_per_step'] / 1e12:.2f} T | {step_s:.2f} | {achieved / 1e9:.1f} GFLOP/s | "
            f"{d} {peak[d] / 1e9:.1f} GFLOP/s | **{100 * fraction[d]:.0f}%** |"
        )


if __name__ == "__main__":
    main()
