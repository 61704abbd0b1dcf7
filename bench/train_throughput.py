"""Training throughput: peftlab against two Hugging Face Trainer + peft baselines.

    .venv/bin/python bench/train_throughput.py --out bench/train_throughput.json     # ~2 h on 2 CPU cores
    .venv/bin/python bench/train_throughput.py --examples 16 --repeats 1 --methods lora  # smoke test, ~7 min

Contenders, on the same model, data, prompt and hyperparameters, each run in its own process:
  peftlab   `python -m peftlab train CONFIG.yaml` (a config written here; peftlab's defaults otherwise,
            so train.precision auto: bf16 on a CPU with AVX512-BF16/AMX, else fp32)
  peftlab-fp32  the same with train.precision fp32: the baselines' numerics on CPU
  peftlab-gc    peftlab with train.gradient_checkpointing: true (the memory option)
  peftlab-torch-dropout  LoRA's fast_dropout and fused_dropout off (torch's bernoulli_ draw, the
            dropped input kept per projection: peft's own path; the defaults before 2026-12-07)
  peftlab-fast  fast_dropout on, fused_dropout off (masks from 16-bit random integers)
  peftlab-fast-fused  both on (the dropout replayed in backward, less memory): LoRA's defaults
  peftlab-peft-add  LoRA's fused_add off: peft's matmul, scale and add of the update (the default
            before 2026-12-07, late)
  peftlab-prev  the `peftlab` contender's config trained by another tree's peftlab (--prev, e.g. a git
            worktree of an earlier commit), to measure a change side by side
  padded    ../shared/bench/hf_baseline.py --recipe padded: every input padded to 512 tokens
  strong    ../shared/bench/hf_baseline.py --recipe strong: dynamic padding + group_by_length
They alternate (peftlab, peftlab-fp32, peftlab-gc, padded, strong, peftlab, ...) for --repeats rounds per model x
method, so a slow spell of the machine hits all of them alike (--contenders picks some). Each trains
one pass over the first --examples DialogSum training examples: LoRA r=16 alpha 32 dropout 0.05 on
the attention projections (or full fine-tuning, or prompt tuning with 20 virtual tokens through
bench/hf_baseline_prompt.py), lr 2e-4 with linear decay and no warmup, batch 8,
gradient clipping 1.0; the baselines run fp32 on CPU (Trainer's bf16 is GPU-only in them).
peftlab's own training peak (optimizer steps only, summary.json peak_memory_bytes) is printed too.

Measured, the same way for every contender:
  examples/s     examples / the contender's own train seconds (peftlab times its optimizer steps;
                 the baseline times trainer.train(), which also loads and collates batches)
  real tokens/s  non-pad tokens the model reads / train seconds: prompt + target for decoder-only
                 models; encoder input + decoder labels for encoder-decoder models
  peak RSS       the child process's ru_maxrss from os.wait4 (whole process: load, train, evaluate)
Ratios peftlab/padded and peftlab/strong are medians of per-round ratios (runs side by side).

Models: smollm2 = the bundled SmolLM2-135M-Instruct (peftlab.models.bundled.ensure_cached);
t5 = a FLAN-T5-small-shaped encoder-decoder with random weights (bench/t5_shaped.py, built once
under --cache). Prints the machine, versions and a Markdown table for bench/RESULTS.md; --out
writes every run's raw numbers as JSON. Progress and ETA go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from peftlab.rundir.summary import RunSummary

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # t5_shaped.py and machine.py, next to this file

from machine import machine, versions  # noqa: E402 (found through the sys.path line above)

# LoRA's dropout options per contender (methods/lora.py; both on by default since 2026-12-07)
LORA_OPTIONS = {
    "peftlab-torch-dropout": {"fast_dropout": False, "fused_dropout": False},
    "peftlab-fast": {"fast_dropout": True, "fused_dropout": False},
    "peftlab-fast-fused": {"fast_dropout": True, "fused_dropout": True},
    "peftlab-peft-add": {"fused_add": False},
}
CONTENDERS = (
    "peftlab",
    "peftlab-torch-dropout",
    "peftlab-fp32",
    "peftlab-gc",
    "peftlab-fast",
    "peftlab-fast-fused",
    "peftlab-peft-add",
    "peftlab-prev",
    "padded",
    "strong",
)
PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary:"  # the baseline's PROMPT
METHODS = ("lora", "full", "prompt_tuning")
NUM_VIRTUAL_TOKENS = 20  # prompt tuning's soft prompt, both contenders
LORA_TARGETS = {False: ["q_proj", "k_proj", "v_proj", "o_proj"], True: ["q", "v"]}  # as the baseline's
TOKENS = (
    "real tokens = non-pad tokens the model reads: prompt + target (decoder-only), "
    "encoder input + decoder labels (encoder-decoder)"
)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,t5", help="comma-separated: smollm2, t5 (default: both)")
    ap.add_argument(
        "--methods", default="lora,full", help="comma-separated: lora, full, prompt_tuning (default: lora,full)"
    )
    ap.add_argument("--examples", type=int, default=96, help="training examples, one pass (default 96 = 12 steps)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the three contenders (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    ap.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    ap.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated (default: all)")
    ap.add_argument("--out", help="write the raw per-run results to this JSON file")
    ap.add_argument("--prev", help="the tree (a folder with src/peftlab) the peftlab-prev contender runs")
    ap.add_argument("--baseline", default=str(ROOT / "../shared/bench/hf_baseline.py"), help="hf_baseline.py")
    ap.add_argument("--data", default=str(ROOT / "../shared/data/dialogsum"), help="DialogSum folder (JSONL)")
    ap.add_argument(
        "--cache", help="where the T5-shaped model is built (default: peftlab's cache, ~/.cache/peftlab/bench)"
    )
    a = ap.parse_args()
    a.models, a.methods, a.contenders = a.models.split(","), a.methods.split(","), a.contenders.split(",")
    for name, allowed in (("models", ("smollm2", "t5")), ("methods", METHODS), ("contenders", CONTENDERS)):
        if bad := [x for x in getattr(a, name) if x not in allowed]:
            ap.error(f"--{name}: unknown {', '.join(bad)}; allowed: {', '.join(allowed)}")
    if "prompt_tuning" in a.methods and "t5" in a.models:
        ap.error("--methods prompt_tuning: decoder-only models only (hf_baseline_prompt.py wraps a causal LM)")
    if "peftlab" not in a.contenders:
        ap.error("--contenders must include peftlab (the ratios are peftlab's against each)")
    if ("peftlab-prev" in a.contenders) != bool(a.prev):
        ap.error("--prev TREE and the contender peftlab-prev go together")
    a.data, a.baseline = str(Path(a.data).resolve()), str(Path(a.baseline).resolve())
    return a


# ---- models -------------------------------------------------------------------------------------
def model_dir(name: str, a: argparse.Namespace) -> Path:
    """A local folder with config, tokenizer and safetensors that both contenders load."""
    from t5_shaped import ensure_t5_shaped

    from peftlab.models.bundled import cache_root, ensure_cached

    if name == "smollm2":
        return ensure_cached("smollm2-135m", log=note)
    return ensure_t5_shaped(a.cache or cache_root() / "bench", Path(a.data) / "train.jsonl", log=note)


def is_seq2seq(folder: Path) -> bool:
    return bool(json.loads((folder / "config.json").read_text()).get("is_encoder_decoder", False))


# ---- one run of one contender -------------------------------------------------------------------
def child_env(threads: int, tree: str | None = None) -> dict:
    """The same environment for every contender: thread count, no hub, no tokenizer threads (and
    another tree's peftlab first on the path for peftlab-prev)."""
    return {
        **os.environ,
        **({"PYTHONPATH": str(Path(tree) / "src")} if tree else {}),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def run_child(cmd: list[str], workdir: Path, threads: int, tree: str | None = None) -> dict:
    """Run ``cmd`` in its own process; its output goes to files, its peak RSS comes from wait4."""
    out, err = workdir / "stdout.txt", workdir / "stderr.txt"
    t0 = time.perf_counter()
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, cwd=workdir, env=child_env(threads, tree), stdout=fo, stderr=fe)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    if proc.returncode != 0:
        tail = "\n".join(err.read_text(errors="replace").splitlines()[-25:])
        sys.exit(f"failed (exit {proc.returncode}): {shlex.join(cmd)}\n{tail}\nlogs kept in {workdir}")
    return {
        "stdout": out.read_text(),
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "wall_s": time.perf_counter() - t0,
        "command": shlex.join(cmd),
    }


def peftlab_config(folder: Path, method: str, a: argparse.Namespace, out_dir: Path, variant: str = "peftlab") -> dict:
    """The baseline's recipe in peftlab's config keys (src/peftlab/config.py); the rest is peftlab's default."""
    seq2seq = is_seq2seq(folder)
    return {
        "name": "run",
        "output_dir": str(out_dir),
        "seed": 0,
        "model": {"name": str(folder)},
        "method": {
            "name": "lora",
            "rank": 16,
            "alpha": 32,
            "dropout": 0.05,
            "target_modules": LORA_TARGETS[seq2seq],
            **LORA_OPTIONS.get(variant, {}),  # the others: LoRA's defaults
        }
        if method == "lora"
        else {"name": "prompt_tuning", "num_virtual_tokens": NUM_VIRTUAL_TOKENS}
        if method == "prompt_tuning"
        else {"name": "full"},
        # The baseline cuts a decoder-only sequence at 512 tokens in all and an encoder input at 512
        # (labels at 128); peftlab cuts the prompt's middle and the target separately.
        "task": {
            "name": "dialogsum",
            "data_dir": a.data,
            "input_template": PROMPT,
            "max_source_tokens": 512 if seq2seq else 384,
            "max_target_tokens": 128,
            "max_new_tokens": 8,
        },
        "train": {
            "max_examples": a.examples,
            "max_train_examples": a.examples,
            "batch_size": a.batch,
            "lr": 2e-4,
            "warmup_ratio": 0.0,
            "schedule": "linear",
            "max_grad_norm": 1.0,
            "weight_decay": 0.0,
            "checkpoint": False,
            "precision": "fp32" if variant == "peftlab-fp32" else "auto",
            "gradient_checkpointing": variant == "peftlab-gc",
        },
        "eval": {"max_validation": 1, "max_test": 1},  # evaluation is not timed; keep it minimal
    }


def run_peftlab(folder: Path, method: str, a: argparse.Namespace, workdir: Path, variant: str) -> dict:
    config = workdir / "config.yaml"
    cfg = peftlab_config(folder, method, a, workdir / "runs", variant)
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    tree = a.prev if variant == "peftlab-prev" else None
    child = run_child([sys.executable, "-m", "peftlab", "train", str(config)], workdir, a.threads, tree)
    s = RunSummary.read(workdir / "runs" / "run" / "summary.json")
    tokens = s.tokens_seen + (decoder_label_tokens(config) if is_seq2seq(folder) else 0)
    return {
        **child,
        "examples": s.examples_seen,
        "train_seconds": s.train_seconds,
        "real_tokens": tokens,
        "own": {
            "steps": s.steps,
            "tokens_seen": s.tokens_seen,
            "peak_memory_bytes": s.peak_memory_bytes,
            "peak_memory_kind": s.peak_memory_kind,
            "truncated_inputs": s.truncated_inputs,
            "trainable_params": s.trainable_params,
            "compute_dtype": s.compute_dtype,
        },
    }


def decoder_label_tokens(config: Path) -> int:
    """peftlab's tokens_seen of an encoder-decoder counts encoder tokens only: add the labels it
    trained on (the first N training targets + </s>, cut at max_target_tokens, as Backbone.encode)."""
    from transformers import AutoTokenizer

    from peftlab.config import load_config
    from peftlab.evaluation.evaluate import limit
    from peftlab.tasks.base import build_task

    cfg = load_config(config)
    tok = AutoTokenizer.from_pretrained(cfg.model.name)
    examples = limit(build_task(cfg.task).split("train"), cfg.train.max_train_examples)
    return sum(len(tok(e.target).input_ids[: cfg.task.max_target_tokens]) for e in examples)


def run_baseline(recipe: str, folder: Path, method: str, a: argparse.Namespace, workdir: Path) -> dict:
    args = [
        "--model",
        str(folder),
        "--data",
        str(Path(a.data) / "train.jsonl"),
        "--input-field",
        "dialogue",
        "--target-field",
        "summary",
        "--recipe",
        recipe,
        "--lora-r",
        "16",
        "--examples",
        str(a.examples),
        "--batch",
        str(a.batch),
        "--max-length",
        "512",
        "--lr",
        "2e-4",
        "--threads",
        str(a.threads),
    ]
    if method == "prompt_tuning":  # the shared script knows LoRA and full only: run it prompt-tuned
        wrapper = [str(ROOT / "bench" / "hf_baseline_prompt.py"), "--baseline", a.baseline]
        cmd = [sys.executable, *wrapper, "--num-virtual-tokens", str(NUM_VIRTUAL_TOKENS), "--", *args]
    else:
        cmd = [sys.executable, a.baseline, *args, "--method", method]
    child = run_child(cmd, workdir, a.threads)
    own = json.loads(child["stdout"].strip().splitlines()[-1])
    return {
        **child,
        "examples": own["examples"],
        "train_seconds": own["train_seconds"],
        "real_tokens": round(own["real_tokens_per_s"] * own["train_seconds"]),
        "own": own,
    }


def run_one(contender: str, folder: Path, method: str, a: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{contender}-"))  # kept when the run fails
    if contender.startswith("peftlab"):
        r = run_peftlab(folder, method, a, workdir, contender)
    else:
        r = run_baseline(contender, folder, method, a, workdir)
    shutil.rmtree(workdir)
    r.pop("stdout")
    return {
        **r,
        "examples_per_s": r["examples"] / r["train_seconds"],
        "real_tokens_per_s": r["real_tokens"] / r["train_seconds"],
    }


# ---- summary ------------------------------------------------------------------------------------
def summarize(runs: list[dict], contenders: list[str]) -> list[dict]:
    """Per model x method x contender: medians, and medians of per-round ratios to peftlab."""
    rows = []
    for key in dict.fromkeys((r["model"], r["method"]) for r in runs):
        group = [r for r in runs if (r["model"], r["method"]) == key]
        by = {c: sorted((r for r in group if r["contender"] == c), key=lambda r: r["repeat"]) for c in contenders}
        for c in contenders:
            row = {"model": key[0], "method": key[1], "contender": c}
            for k in ("examples_per_s", "real_tokens_per_s", "peak_rss_mb", "train_seconds"):
                row[k] = statistics.median(r[k] for r in by[c])
            own = [r["own"].get("peak_memory_bytes") for r in by[c] if c.startswith("peftlab")]
            row["own_peak_memory_bytes"] = statistics.median(own) if own and None not in own else None
            for name, k in (
                ("speedup_examples", "examples_per_s"),
                ("speedup_tokens", "real_tokens_per_s"),
                ("rss_ratio", "peak_rss_mb"),
            ):  # peftlab / this contender, round by round
                row[f"peftlab_{name}"] = statistics.median(p[k] / o[k] for p, o in zip(by["peftlab"], by[c]))
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        (
            "| model | method | contender | examples/s | real tokens/s | peak RSS | train s "
            "| peftlab ÷ it: examples/s | ÷ tokens/s | ÷ peak RSS | train peak (peftlab's own) |"
        ),
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            r["model"],
            r["method"],
            r["contender"],
            f"{r['examples_per_s']:.3f}",
            f"{r['real_tokens_per_s']:.0f}",
            f"{r['peak_rss_mb'] / 1024:.1f} GB",
            f"{r['train_seconds']:.1f}",
        ]
        keys = ("peftlab_speedup_examples", "peftlab_speedup_tokens", "peftlab_rss_ratio")
        cells += ["–"] * 3 if r["contender"] == "peftlab" else [f"{r[k]:.2f}×" for k in keys]
        own = r.get("own_peak_memory_bytes")
        cells.append(f"{own / 2**30:.1f} GB" if own else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def main() -> None:
    a = parse_args()
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    info = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": {**machine(), **versions()},
        "examples": a.examples,
        "batch": a.batch,
        "threads": a.threads,
        "repeats": a.repeats,
        "tokens": TOKENS,
    }
    folders = {m: model_dir(m, a) for m in a.models}
    plan = [(m, meth, rep, c) for m in a.models for meth in a.methods for rep in range(a.repeats) for c in a.contenders]
    runs, start = [], time.perf_counter()
    for i, (m, meth, rep, c) in enumerate(plan):
        elapsed = time.perf_counter() - start
        eta = f", ETA {minutes(elapsed / i * (len(plan) - i))}" if i else ""
        note(f"[{i + 1}/{len(plan)}] {m} {meth} round {rep + 1}/{a.repeats}: {c} ({minutes(elapsed)} elapsed{eta})")
        r = run_one(c, folders[m], meth, a)
        note(
            f"    {r['examples_per_s']:.3f} examples/s, {r['real_tokens_per_s']:.0f} real tokens/s, "
            f"peak RSS {r['peak_rss_mb'] / 1024:.1f} GB"
        )
        runs.append({"model": m, "method": meth, "repeat": rep, "contender": c, "model_dir": str(folders[m]), **r})
    rows = summarize(runs, a.contenders)
    print(
        f"Command: {command}\nDate: {info['date']}\nMachine: {json.dumps(info['machine'])}\n"
        f"{a.examples} DialogSum examples (one pass), batch {a.batch}, {a.threads} threads, {a.repeats} rounds "
        f"alternating; medians; ratios are medians of per-round ratios.\n{TOKENS}; peak RSS = child ru_maxrss.\n"
    )
    print(markdown(rows))
    if a.out:
        Path(a.out).write_text(json.dumps({**info, "summary": rows, "runs": runs}, indent=1) + "\n")
        note(f"raw results: {a.out}")


if __name__ == "__main__":
    main()
