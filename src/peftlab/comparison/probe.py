"""A short timed probe of one method on this machine, for `peftlab compare --plan`: the model loaded and
the method applied as a run does it (run_model.load_model; the base model loaded once per plan and
copied for each method), the exact steps and FLOPs of each run's budget counted without training (the
run's own loader and budget rule, FLOPs from the batch shapes), optimizer steps on the run's first real
batches timed after one warm-up step until there are enough of them (``Timing``), and one batch of
validation generated to 1 and to 17 new tokens, three times each (its prefill and seconds per token
fitted to the medians). Nothing is written.

On a machine shared with other jobs a step or a generation caught by a neighbour's burst takes several
times its usual seconds: steps are timed by their median and the decode by the median of repeats, and
the probe's process CPU time against its wall time says how much of its threads it had.
"""

from __future__ import annotations

import copy
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from peftlab.config import ExperimentConfig
from peftlab.console import console
from peftlab.evaluation.evaluate import limit
from peftlab.measure.flops import StepFlops
from peftlab.measure.precision import run_dtypes
from peftlab.methods import count_parameters, get_method, method_options, trainable_parameters
from peftlab.models.backbone import Backbone
from peftlab.models.kind import output_head
from peftlab.models.loading import load_as_trained
from peftlab.tasks.base import Task
from peftlab.training.batching import batches_forever
from peftlab.training.run_model import prepare
from peftlab.training.train import build_optimizer, step_cost
from peftlab.training.train_data import build_loader, make_budget
from peftlab.training.train_state import TrainState

MAX_COUNTED_STEPS = 1_000_000  # a budget larger than this many steps is not counted step by step
BURST = 1.5  # a timed step this many times the median's or slower was caught by another process


@dataclass(frozen=True)
class Timing:
    """How many optimizer steps the probe times after its warm-up step: at least ``min_steps`` and at
    least ``min_seconds`` of them, at most ``max_steps`` (the run's first batches, again from its first
    when the run has fewer)."""

    min_steps: int = 5
    min_seconds: float = 10.0
    max_steps: int = 10

    def enough(self, seconds: list[float]) -> bool:
        """Whether the steps timed so far (``seconds``, the warm-up not among them) are enough."""
        if len(seconds) >= self.max_steps:
            return True
        return len(seconds) >= self.min_steps and sum(seconds) >= self.min_seconds


@dataclass
class Counted:
    """A run's budget in optimizer steps, as its trainer will spend it (exact for every kind but seconds)."""

    steps: int | None  # None: a seconds budget, known only from the step time
    flops: int  # of those steps (of the first ones, for a seconds budget)
    first: list[list[dict]] = field(default_factory=list, repr=False)  # the first steps' shards, for timing
    first_flops: list[int] = field(default_factory=list, repr=False)  # and their FLOPs


@dataclass
class Probe:
    """What one method costs here: its parameters, load time, seconds per step and per generated example."""

    trainable: int
    total: int
    load_seconds: float
    step_seconds: float | None  # None: the method does not train; the typical timed step
    flop_seconds: float | None  # seconds per training FLOP, of the typical timed step
    decoding: Decoding | None  # None: no examples to generate
    counted: dict[str, Counted]  # run name -> its budget in steps
    timed_steps: int = 0
    cpu_threads: float | None = None  # process CPU seconds per wall second while the steps were timed


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def startup_seconds() -> float:
    """How long a run's own process takes to start (the imports a trainer pays before loading a model)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import peftlab.training.train"], check=False, capture_output=True)
    return time.perf_counter() - t0


def typical(seconds: list[float]) -> float:
    """A step's usual seconds: the mean of the samples below ``BURST`` x their median (a step slowed
    by another process's burst counts for nothing; a mean of the rest is steadier than their median)."""
    middle = statistics.median(seconds)
    kept = [s for s in seconds if s < BURST * middle]
    return statistics.fmean(kept) if kept else middle


def count_steps(
    cfg: ExperimentConfig, backbone: Backbone, task: Task, flops: StepFlops, keep: int, processes: int = 1
) -> Counted:
    """The steps the run's budget buys and their FLOPs: its loader (same seed, same batches, ``processes``
    shards a step) and the budget's admit rule, each step's FLOPs from its shapes; the first ``keep``
    steps' batches kept."""
    loader, _, _ = build_loader(cfg, processes, backbone, task)
    state = TrainState()
    budget = make_budget(cfg, loader, state)
    counter = SimpleNamespace(backbone=backbone, count_flops=flops)
    batches, counted = batches_forever(loader), Counted(0, 0)
    while state.step < MAX_COUNTED_STEPS:
        shards = [shard for _ in range(cfg.train.grad_accum) for shard in next(batches)]
        cost = step_cost(counter, shards)
        if len(counted.first) < keep:
            counted.first.append(shards)
            counted.first_flops.append(int(cost["flops"]))
        if budget.kind == "seconds":
            if state.step >= keep:
                return Counted(None, state.flops, counted.first, counted.first_flops)
        elif not budget.admit(cost):
            break
        state.count_step(cost)
    return Counted(state.step, state.flops, counted.first, counted.first_flops)


@dataclass
class StepTimes:
    """The timed steps (the warm-up not among them): each one's seconds and FLOPs, and the process's CPU
    seconds per wall second over them."""

    seconds: list[float]
    flops: list[int]
    cpu_threads: float


def time_steps(cfg: ExperimentConfig, backbone: Backbone, options, counted: Counted, timing: Timing) -> StepTimes:
    """Optimizer steps on the run's first batches, one warm-up (allocations, kernel choice) and then
    until ``timing`` has enough of them."""
    method, core = get_method(cfg.method.name), backbone.model
    lr = cfg.train.lr if cfg.train.lr is not None else method.lr(options)
    optimizer = build_optimizer(cfg, method, options, core, lr)
    params, head, kind = list(trainable_parameters(core).values()), output_head(core), backbone.kind
    core.train()
    seconds: list[float] = []
    flops: list[int] = []
    cpu, wall = 0.0, 0.0
    for i in range(1 + timing.max_steps):
        shards = counted.first[i % len(counted.first)]
        t0, c0 = time.perf_counter(), time.process_time()
        labelled = max(sum(kind.labelled_tokens(b) for b in shards), 1)
        for b in shards:
            with backbone.numerics():
                part = kind.loss_sum(core, head, {k: v.to(backbone.device) for k, v in b.items()})
            (part / labelled).backward()
        if cfg.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            continue  # the warm-up
        seconds.append(time.perf_counter() - t0)
        flops.append(counted.first_flops[i % len(counted.first)])
        cpu, wall = cpu + time.process_time() - c0, wall + seconds[-1]
        if timing.enough(seconds):
            break
    return StepTimes(seconds, flops, cpu / wall if wall else 0.0)


@dataclass
class Decoding:
    """One batch of generation timed: a batch decodes until its longest generation ends (or max_new_tokens)."""

    batch_size: int
    first_token_seconds: float  # the prompts' prefill and the first token, per batch
    token_seconds: float  # each further token, per batch
    trained_tokens: int  # a trained model's longest generation in a batch: its longest target, and the end
    untrained_tokens: int  # an untrained model's (validation at step 0, zero-shot): max_new_tokens

    def seconds(self, examples: int, trained: bool) -> float:
        tokens = self.trained_tokens if trained else self.untrained_tokens
        batches = math.ceil(examples / self.batch_size)
        return batches * (self.first_token_seconds + max(tokens - 1, 0) * self.token_seconds)


def decode_fit(samples: list[tuple[int, float]]) -> tuple[float, float]:
    """(seconds to the first token, seconds per further token) from (tokens decoded, seconds) samples:
    the median of each length's repeats (a repeat slowed by a burst counts for nothing), a least-squares
    line through those medians."""
    by_length: dict[int, list[float]] = {}
    for n, s in samples:
        by_length.setdefault(n, []).append(s)
    points = [(n, statistics.median(s)) for n, s in sorted(by_length.items())]
    if len(points) < 2:
        return points[0][1], 0.0
    mean_n = statistics.fmean(n for n, _ in points)
    mean_s = statistics.fmean(s for _, s in points)
    slope = sum((n - mean_n) * (s - mean_s) for n, s in points) / sum((n - mean_n) ** 2 for n, _ in points)
    slope = max(slope, 0.0)
    return max(mean_s + slope * (1 - mean_n), 0.0), slope


class NoEnd:
    """A tokenizer with no end-of-sequence token (-1 is never generated): a probe's generation decodes
    every token it asks for; a row's end costs nothing in a batch that decodes on (decode.greedy)."""

    eos_token_id = -1

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)


def time_generation(
    cfg: ExperimentConfig, backbone: Backbone, task: Task, tokens: int = 17, repeats: int = 3
) -> Decoding | None:
    """One batch of validation (else test) examples generated to 1 and to ``tokens`` new tokens,
    alternately, ``repeats`` times each, no row ending early: the prefill and the seconds per further
    token, without decoding to max_new_tokens."""
    pool = task.splits.get("validation") or task.split("test")
    examples = limit(pool, cfg.eval.batch_size)
    if not examples:
        return None
    backbone.model.eval()
    endless = copy.copy(backbone)
    endless.tokenizer = NoEnd(backbone.tokenizer)
    prompts, samples = [e.prompt for e in examples], []
    for n in [1, max(min(tokens, task.max_new_tokens), 2)] * repeats:  # generation alone, not scoring
        t0 = time.perf_counter()
        ids = endless.generate_ids(
            backbone.model,
            prompts,
            max_new_tokens=n,
            batch_size=cfg.eval.batch_size,
            num_beams=cfg.eval.num_beams,
            max_source_tokens=cfg.task.max_source_tokens,
            kv_cache_gb=cfg.eval.kv_cache_gb,
        )
        samples.append((max((len(row) for row in ids), default=1), time.perf_counter() - t0))
    first, per_token = decode_fit(samples)
    longest = max(len(backbone.tokenizer(e.target)["input_ids"]) for e in examples) + 1
    return Decoding(cfg.eval.batch_size, first, per_token, min(longest, task.max_new_tokens), task.max_new_tokens)


def load_applied(cfg: ExperimentConfig, method, options, bases: dict) -> tuple[Backbone, float]:
    """The backbone with the method applied, as run_model.load_model makes it (no forgetting sample), and
    the seconds a run spends on it. A base model loaded before for this model and precision (``bases``:
    key -> (backbone, its load seconds)) is copied instead of loaded again; a quantized one never is."""
    weights = run_dtypes(cfg.model.dtype, cfg.train.precision, "cpu")[0]
    quantization = method.quantization(options, weights)
    key = (cfg.model.model_dump_json(), cfg.train.precision)
    t0 = time.perf_counter()
    if quantization is None and key in bases:
        base, load_seconds = bases[key]
    else:
        base = load_as_trained(cfg.model, cfg.train.precision, device(), console.print, False, quantization)
        load_seconds = time.perf_counter() - t0
        if quantization is None:
            bases[key] = (base, load_seconds)
    backbone = copy.copy(base)
    backbone.model, backbone.truncated_digests = (
        copy.deepcopy(base.model) if quantization is None else base.model,
        set(),
    )
    t0 = time.perf_counter()
    prepare(backbone, method, options, cfg.train.gradient_checkpointing)  # as a run does it
    return backbone, load_seconds + time.perf_counter() - t0


def probe(
    cfgs: list[ExperimentConfig], task: Task, processes: int = 1, timing: Timing | None = None, bases=None
) -> Probe:
    """One method's probe: ``cfgs`` are its runs (same model, method options and batches; seeds and lrs
    differ). A step of several ``processes`` is timed on this one device, all of it."""
    cfg, timing = cfgs[0], timing or Timing()
    method, options = get_method(cfg.method.name), method_options(cfg.method)
    backbone, load_seconds = load_applied(cfg, method, options, {} if bases is None else bases)
    trainable, total = count_parameters(backbone.model)
    out = Probe(trainable, total, load_seconds, None, None, None, {})
    if method.trains:
        with backbone.numerics():
            flops = StepFlops(backbone.model, backbone.kind)
        for c in cfgs:
            out.counted[c.run_name()] = count_steps(c, backbone, task, flops, 1 + timing.max_steps, processes)
        times = time_steps(cfg, backbone, options, out.counted[cfg.run_name()], timing)
        out.step_seconds, out.timed_steps, out.cpu_threads = (
            typical(times.seconds),
            len(times.seconds),
            times.cpu_threads,
        )
        if all(times.flops):
            out.flop_seconds = typical([s / f for s, f in zip(times.seconds, times.flops)])
    out.decoding = time_generation(cfg, backbone, task)
    return out


def seconds_budget_steps(amount: float, step_seconds: float | None) -> int:
    return max(1, math.ceil(amount / step_seconds)) if step_seconds else 1
