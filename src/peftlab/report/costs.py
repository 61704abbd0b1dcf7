"""Notes on a comparison's cost columns: mixed hardware or numerics, or CPU runs that shared the machine."""

from __future__ import annotations

from peftlab.report import measures
from peftlab.report.aggregate import Comparison
from peftlab.report.runs import Run


def device_of(r: Run) -> str | None:
    """The device a run's costs were measured on: its launch record, else its hardware record."""
    if r.summary.launch and r.summary.launch.device:
        return r.summary.launch.device
    hw = r.summary.hardware
    return (hw.cuda or hw.processor) if hw else None


def cost_notes(comp: Comparison) -> list[str]:
    """Warnings on the cost columns: runs measured on different devices, or CPU runs that shared
    the machine with other runs (their seconds and throughput are slower than alone)."""
    notes = []
    devices = sorted({d for r in comp.runs if (d := device_of(r))})
    if len(devices) > 1:
        notes.append(f"⚠ cost columns mix hardware: {'; '.join(devices)} (compare seconds and memory with care)")
    dtypes: dict[str, list[str]] = {}
    for r in comp.runs:
        if r.summary.compute_dtype:
            dtypes.setdefault(r.summary.compute_dtype, []).append(r.summary.run)
    if len(dtypes) > 1:  # train.precision auto resolved differently (mixed CPUs), or set per method
        listed = "; ".join(f"{d}: {', '.join(sorted(runs))}" for d, runs in sorted(dtypes.items()))
        notes.append(
            f"⚠ runs computed in different dtypes ({listed}): quality and speed were not measured under one "
            "numerics (set train.precision, or PEFTLAB_CPU_BF16, to pin one)"
        )
    shared = [
        r
        for r in comp.runs
        if r.summary.launch
        and r.summary.launch.concurrency > 1
        and not (r.summary.hardware and r.summary.hardware.cuda)
    ]
    if shared:
        most = max(r.summary.launch.concurrency for r in shared)
        notes.append(
            f"⚠ {len(shared)} of {len(comp.runs)} runs ran on CPU beside up to {most - 1} other run(s) "
            "(compare --parallel): their train seconds and tokens/s are slower than alone; FLOPs, memory and "
            "quality are not affected"
        )
    return notes + inference_notes(comp)


def inference_notes(comp: Comparison) -> list[str]:
    """The inference columns' caveats: figures timed beside other CPU runs (marked in their cells), and
    older runs whose ms/token mixed prompt processing in (not shown beside prefill/decode figures)."""
    notes = []
    if any(measures.shared_cpu(e) and _has_inference(e) for e in comp.entries):
        notes.append(f"⚠ {measures.SHARED_NOTE}")
    older = sorted(r.summary.run for r in comp.runs if r.summary.inference and not r.summary.inference.prefill_apart)
    if older:
        notes.append(
            f"⚠ inference cost of {', '.join(older)} recorded before prefill and decode were timed apart "
            "(one ms/token over prompt and generated tokens, up to EOS): not shown; re-run to measure it"
        )
    return notes


def _has_inference(e) -> bool:
    return any(r.summary.inference for r in e.runs)


def on_gpu(r: Run) -> bool:
    return bool(r.summary.hardware and r.summary.hardware.cuda)


def _measure_seconds(r: Run, name: str) -> float:
    record = getattr(r.summary, name)
    return (record.seconds or 0.0) if record is not None else 0.0


def time_split(comp: Comparison) -> str | None:
    """Where the comparison's run time went: optimizer steps, evaluation (every validation and the
    test), the forgetting and inference-cost measures where runs made them, and the rest (process
    start, imports, model loading, the FLOP probe, checkpoints), summed over its runs; None when a
    run predates the record (no wall_seconds)."""
    walls = [r.summary.wall_seconds for r in comp.runs]
    if not walls or any(w is None for w in walls):
        return None
    wall = sum(walls)
    parts = {
        "training": sum(r.summary.train_seconds or 0 for r in comp.runs),
        "evaluation": sum(r.summary.eval_seconds or 0 for r in comp.runs),
        "forgetting": sum(_measure_seconds(r, "forgetting") for r in comp.runs),
        "inference cost": sum(_measure_seconds(r, "inference") for r in comp.runs),
    }
    parts = {k: v for k, v in parts.items() if v or k in ("training", "evaluation")}
    other = max(0.0, wall - sum(parts.values()))

    def part(seconds: float) -> str:
        return f"{seconds:,.0f} s ({100 * seconds / wall:.0f}%)" if wall else f"{seconds:,.0f} s"

    shown = ", ".join(f"{k} {part(v)}" for k, v in parts.items())
    return (
        f"Time, summed over {len(walls)} runs ({wall:,.0f} s): {shown}, other {part(other)} "
        "(process start, model loading, checkpoints)"
    )
