"""A short timed probe of one method on this machine, for `peftlab compare --plan`: the model loaded and
the method applied as a run does it (run_model.load_model), the exact steps and FLOPs of each run's
budget counted without training (the run's own loader and budget rule, FLOPs from the batch shapes),
a few optimizer steps on the run's first real batches timed after one warm-up step, and one batch of
validation generated to 1 and to 9 new tokens (its prefill and its seconds per token). Nothing is written.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from peftlab.config import ExperimentConfig
from peftlab.evaluation.evaluate import limit
from peftlab.measure.flops import StepFlops
from peftlab.methods import count_parameters, get_method, method_options, trainable_parameters
from peftlab.models.backbone import Backbone
from peftlab.models.kind import output_head
from peftlab.tasks.base import Task
from peftlab.training.batching import batches_forever
from peftlab.training.run_model import load_model
from peftlab.training.train import build_optimizer, step_cost
from peftlab.training.train_data import build_loader, make_budget
from peftlab.training.train_state import TrainState

MAX_COUNTED_STEPS = 1_000_000  # a budget larger than this many steps is not counted step by step


@dataclass
class Counted:
    """A run's budget in optimizer steps, as its trainer will spend it (exact for every kind but seconds)."""

    steps: int | None  # None: a seconds budget, known only from the step time
    flops: int  # of those steps (of the first ones, for a seconds budget)
    first: list[list[dict]] = field(default_factory=list, repr=False)  # the first steps' shards, for timing


@dataclass
class Probe:
    """What one method costs here: its parameters, load time, seconds per step and per generated example."""

    trainable: int
    total: int
    load_seconds: float
    step_seconds: float | None  # None: the method does not train
    decoding: Decoding | None  # None: no examples to generate
    counted: dict[str, Counted]  # run name -> its budget in steps


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def startup_seconds() -> float:
    """How long a run's own process takes to start (the imports a trainer pays before loading a model)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import peftlab.training.train"], check=False, capture_output=True)
    return time.perf_counter() - t0


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
    batches, first = batches_forever(loader), []
    while state.step < MAX_COUNTED_STEPS:
        shards = [shard for _ in range(cfg.train.grad_accum) for shard in next(batches)]
        if len(first) < keep:
            first.append(shards)
        cost = step_cost(counter, shards)
        if budget.kind == "seconds":
            if state.step >= keep:
                return Counted(None, state.flops, first)
        elif not budget.admit(cost):
            break
        state.count_step(cost)
    return Counted(state.step, state.flops, first)


def time_steps(cfg: ExperimentConfig, backbone: Backbone, options, steps: list[list[dict]]) -> float | None:
    """Median seconds of the optimizer steps after the first (a warm-up: allocations, kernel choice)."""
    method, core = get_method(cfg.method.name), backbone.model
    lr = cfg.train.lr if cfg.train.lr is not None else method.lr(options)
    optimizer = build_optimizer(cfg, method, options, core, lr)
    params, head, kind = list(trainable_parameters(core).values()), output_head(core), backbone.kind
    core.train()
    seconds = []
    for shards in steps:
        t0 = time.perf_counter()
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
        seconds.append(time.perf_counter() - t0)
    timed = seconds[1:] or seconds
    # The median: on a shared machine one step caught by another process's burst would move a mean far.
    return statistics.median(timed) if timed else None


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


def time_generation(cfg: ExperimentConfig, backbone: Backbone, task: Task, tokens: int = 9) -> Decoding | None:
    """One batch of validation (else test) examples generated twice, to 1 and to ``tokens`` new tokens:
    the prefill and the seconds per further token, without decoding to max_new_tokens."""
    pool = task.splits.get("validation") or task.split("test")
    examples = limit(pool, cfg.eval.batch_size)
    if not examples:
        return None
    backbone.model.eval()
    seconds = []
    prompts = [e.prompt for e in examples]
    for n in (1, tokens):  # generation alone: scoring a cut prediction (a partial SQL query) may take any time
        t0 = time.perf_counter()
        backbone.generate(
            backbone.model,
            prompts,
            max_new_tokens=n,
            batch_size=cfg.eval.batch_size,
            num_beams=cfg.eval.num_beams,
            max_source_tokens=cfg.task.max_source_tokens,
        )
        seconds.append(time.perf_counter() - t0)
    longest = max(len(backbone.tokenizer(e.target)["input_ids"]) for e in examples) + 1
    per_token = max(seconds[1] - seconds[0], 0.0) / (tokens - 1)
    return Decoding(cfg.eval.batch_size, seconds[0], per_token, min(longest, task.max_new_tokens), task.max_new_tokens)


def probe(cfgs: list[ExperimentConfig], task: Task, processes: int = 1, timed_steps: int = 3) -> Probe:
    """One method's probe: ``cfgs`` are its runs (same model and method, one per seed). A step of
    several ``processes`` is timed on this one device, all of it."""
    cfg = cfgs[0]
    method, options = get_method(cfg.method.name), method_options(cfg.method)
    run = SimpleNamespace(cfg=cfg, accelerator=SimpleNamespace(device=device()), main=True)
    t0 = time.perf_counter()
    backbone, _ = load_model(run, method, options, False, [])
    load_seconds = time.perf_counter() - t0
    trainable, total = count_parameters(backbone.model)
    counted, step_seconds = {}, None
    if method.trains:
        with backbone.numerics():
            flops = StepFlops(backbone.model, backbone.kind)
        for c in cfgs:
            counted[c.run_name()] = count_steps(c, backbone, task, flops, 1 + timed_steps, processes)
        step_seconds = time_steps(cfg, backbone, options, counted[cfg.run_name()].first)
    return Probe(trainable, total, load_seconds, step_seconds, time_generation(cfg, backbone, task), counted)


def seconds_budget_steps(amount: float, step_seconds: float | None) -> int:
    return max(1, math.ceil(amount / step_seconds)) if step_seconds else 1
