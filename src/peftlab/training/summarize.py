"""summary.json from a finished run: the loop's state plus the facts train() gathered (``RunFacts``:
method, budget, peak memory, parameter counts, test scores), and the environment it ran in."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from peftlab.comparison.launch.job import ENV_CONCURRENCY, ENV_LAUNCHER, ENV_SLOT
from peftlab.measure.cost import dir_bytes
from peftlab.measure.precision import dtype_name
from peftlab.methods import method_options
from peftlab.rundir.runio import cpu_name, environment
from peftlab.rundir.runlock import job_id
from peftlab.rundir.summary import BudgetLimit, Forgetting, InferenceCost, LaunchInfo, RunSummary
from peftlab.training.run import Run
from peftlab.training.train_state import TrainState, run_wall_seconds

if TYPE_CHECKING:  # annotations only: what train() hands over
    from peftlab.measure.cost import PeakMemory
    from peftlab.methods.base import Method
    from peftlab.models.backbone import Backbone
    from peftlab.tasks.base import Example, Task
    from peftlab.training.budget import Budget


@dataclass(frozen=True)
class RunFacts:
    """What train() gathered for the summary beside the loop's state."""

    method: Method
    lr: float  # the peak learning rate (reported only for a method that trains)
    trainable: int  # parameters the method trains
    total: int  # all parameters of the model the method made
    budget: Budget | None  # None: a method that trains nothing (zero-shot)
    skipped_long: int  # training examples skipped as too long (task.too_long: skip)
    memory: PeakMemory  # the whole run's and the optimizer steps' peaks
    frozen_bf16_params: int  # frozen parameters held in bf16 while training (frozen_bf16_params)
    test: list[Example]  # the test examples scored
    test_scores: dict[str, float]  # every metric, and the seconds scoring took
    forgetting: Forgetting | None  # None: cfg.forgetting not set
    inference: InferenceCost | None  # None: eval.inference_cost off


def summarize(run: Run, task: Task, backbone: Backbone, state: TrainState, facts: RunFacts) -> RunSummary:
    """summary.json: final numbers, cost, versions and hardware."""
    cfg, method, budget, memory = run.cfg, facts.method, facts.budget, facts.memory
    trainable, total, seconds = facts.trainable, facts.total, state.seconds
    return RunSummary(
        run=cfg.run_name(),
        method=method.name,
        trains=method.trains,
        label=cfg.label or method.name,
        task=task.name,
        model=cfg.model.name,
        seed=cfg.seed,
        compute_dtype=dtype_name(backbone.compute_dtype, _weights_dtype(backbone)),
        primary_metric=task.primary,
        higher_is_better=task.higher_is_better,
        test=facts.test_scores,
        test_examples=len(facts.test),
        test_ids_sha256=hashlib.sha256("\n".join(e.id for e in facts.test).encode()).hexdigest(),
        best_validation=state.best_scores,
        best_step=state.best_step,
        budget=BudgetLimit(kind=budget.kind, amount=budget.amount, spent=budget.spent[budget.kind]) if budget else None,
        steps=state.step,
        processes=run.processes,
        launch=launch_info(),
        flops=state.flops,
        flops_per_step=state.flops / state.step if state.step else None,
        examples_seen=state.examples,
        tokens_seen=state.tokens,
        lr=facts.lr if method.trains else None,
        trainable_params=trainable,
        total_params=total,
        trainable_pct=100 * trainable / total,
        adapter_bytes=dir_bytes(run.files.adapter),
        train_seconds=round(seconds, 3),
        eval_seconds=round(state.eval_seconds + facts.test_scores["seconds"], 3),
        wall_seconds=round(run_wall_seconds(state), 3),
        train_examples_per_s=state.examples / seconds if seconds else None,
        train_tokens_per_s=state.tokens / seconds if seconds else None,
        forgetting=facts.forgetting,
        inference=facts.inference,
        peak_memory_bytes=memory.train_peak,
        run_peak_memory_bytes=memory.peak,
        peak_memory_kind=memory.kind,
        frozen_bf16_params=facts.frozen_bf16_params,
        truncated_inputs=backbone.truncated,
        skipped_long_train_examples=facts.skipped_long,
        overlap=task.overlap,
        deviations=list(method.deviations(method_options(cfg.method))) or None,
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **environment(),
    )


def frozen_bf16_params(model: torch.nn.Module) -> int:
    """Frozen parameters stored in bf16 (a tied one once). Counted as training held them:
    before inference_cost merges the adapter into the base or frees the training state."""
    return sum(p.numel() for p in model.parameters() if not p.requires_grad and p.dtype == torch.bfloat16)


def _weights_dtype(backbone: Backbone) -> torch.dtype:
    # the first floating-point weight: a quantized model's packed weights are integers
    return next(p.dtype for p in backbone.model.parameters() if p.is_floating_point())


def launch_info() -> LaunchInfo:
    """What the launcher told the run (launch/job.py's environment variables), and this machine."""
    env = os.environ
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (cpu_name() or platform.machine())
    return LaunchInfo(
        launcher=env.get(ENV_LAUNCHER, "direct"),
        host=socket.gethostname(),
        device=device,
        slot=env.get(ENV_SLOT),
        concurrency=int(env.get(ENV_CONCURRENCY, "1")),
        job_id=job_id(),
    )
