"""The training loop, readable top to bottom: ``train`` is the recipe, each step of it a function below.

    config -> task examples -> backbone (model + tokenizer) -> method.apply -> AdamW + schedule
    -> optimizer steps (accelerate: device placement, mixed precision on GPU, several processes)
    -> validation by free generation at evenly spaced points; keep the best trainable weights
    -> restore the best, save the adapter, score the test split ONCE -> summary.json

Only the optimizer steps are timed (not evaluation, not logging), so "train seconds" is the cost
of training and nothing else. What the run has done so far is a ``TrainState`` (train_state.py),
which checkpoints save and ``--resume`` restores.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import torch

from peftlab.comparison import rung
from peftlab.config import ExperimentConfig
from peftlab.console import console, progress
from peftlab.errors import PeftlabError
from peftlab.evaluation.evaluate import generate_and_score, limit, show_scores
from peftlab.measure import forgetting, inference_cost
from peftlab.measure.cost import PeakMemory, Stopwatch
from peftlab.measure.flops import StepFlops
from peftlab.methods import count_parameters, get_method, method_options, trainable_parameters
from peftlab.methods.base import LoopHooks, Method
from peftlab.methods.registry import refuse_misfit_before_loading
from peftlab.models.backbone import Backbone
from peftlab.models.kind import output_head
from peftlab.models.loading import check_remote_code
from peftlab.rundir import diskspace
from peftlab.rundir.diskspace import writing
from peftlab.rundir.runio import atomic_write_text, read_jsonl, write_predictions
from peftlab.rundir.runlock import RunLock
from peftlab.tasks.base import Task, build_task
from peftlab.training import checkpoint
from peftlab.training.batching import EpochSampler, batches_forever
from peftlab.training.budget import Budget, crossed, lr_factor
from peftlab.training.run import Run, open_run
from peftlab.training.run_model import load_model
from peftlab.training.stop import StopRequest
from peftlab.training.summarize import RunFacts, frozen_bf16_params, summarize
from peftlab.training.train_data import build_loader, make_budget
from peftlab.training.train_state import TrainState, seed_everything
from peftlab.training.validation import Validation, restore_best


def train(
    cfg: ExperimentConfig,
    overwrite: bool = False,
    resume: bool = False,
    require_checkpoint: bool = False,
    allow_unsafe_pickle: bool = False,
) -> Path:
    """Train (or, for method 'none', only evaluate) one run; returns the run folder.

    With ``resume``, a run folder holding a checkpoint of the same config continues from it. The
    folder is locked while it trains (runlock.py): a second trainer of it stops with RunLocked. A
    write the disk refuses (full, read-only) stops the run with a PeftlabError naming the file."""
    check_remote_code(cfg.model)  # before the lock makes the run folder: a refused run leaves nothing
    refuse_misfit_before_loading(cfg.method.name, cfg.model)  # BitFit on a model without biases: likewise
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, the main process locks
    with RunLock(cfg.run_dir()) if main_rank else contextlib.nullcontext():
        with diskspace.stop_on_disk_errors(cfg.run_dir(), checkpoint.saved_step):
            return _train(cfg, overwrite, resume, require_checkpoint, allow_unsafe_pickle)


def _train(
    cfg: ExperimentConfig, overwrite: bool, resume: bool, require_checkpoint: bool, allow_unsafe_pickle: bool
) -> Path:
    method, options = get_method(cfg.method.name), method_options(cfg.method)
    task = build_task(cfg.task, log=console.print)  # before any writing: a data error leaves no half-made run folder
    forgetting_texts = forgetting.sample(cfg.forgetting, log=console.print) if cfg.forgetting else []
    run = open_run(cfg, overwrite, resume, require_checkpoint)
    seed_everything(cfg.seed)
    backbone, loss_before = load_model(run, method, options, allow_unsafe_pickle, forgetting_texts)
    core = backbone.model  # accelerate may wrap it for training (DDP); generation and saving use it unwrapped
    trainable, total = count_parameters(core)
    frozen_bf16 = frozen_bf16_params(core)  # as training holds the model (inference_cost merges it later)
    check_free_space(run, task, trainable)
    console.print(
        f"[bold]{cfg.run_name()}[/bold]: {method.name} on {cfg.model.name}, task {task.name}; "
        f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.3f}%)"
    )
    lr = cfg.train.lr if cfg.train.lr is not None else method.lr(options)
    validate = Validation(run, backbone, task)
    state, budget, skipped = TrainState(), None, 0  # method 'none': nothing trains, the test is all
    with PeakMemory() as memory:
        if method.trains:
            state, budget, skipped = fit(run, backbone, method, options, task, lr, validate, memory)
            if not run.main or rung.reached(cfg, budget):
                return run.dir  # the main process validates, tests and writes the summary; a rung, none
            restore_best(core, state, task, run.dir)
        else:
            memory.floor()  # zero-shot: the memory of the loaded model
        core.eval()
        with writing(run.files.adapter):
            method.save(core, run.files.adapter)
        test = limit(task.split("test"), cfg.eval.max_test)
        test_scores, test_preds = generate_and_score(backbone, core, task, test, label="test", **validate.gen_kwargs)
        forgot = forgetting.measure(cfg, backbone, forgetting_texts, loss_before)
        inference = measure_inference(run, backbone, method.merges(options), test)
    with writing(run.files.predictions):
        write_predictions(run.files.predictions, test, test_preds, task.per_example(test_preds, test))
    show_scores(f"{cfg.run_name()} test", test_scores, task.primary)
    facts = RunFacts(
        method=method,
        lr=lr,
        trainable=trainable,
        total=total,
        budget=budget,
        skipped_long=skipped,
        memory=memory,
        frozen_bf16_params=frozen_bf16,
        test=test,
        test_scores=test_scores,
        forgetting=forgot,
        inference=inference,
    )
    summarize(run, task, backbone, state, facts).write(run.files.summary)
    checkpoint.remove(run.dir)  # the run is finished: its adapter and summary replace the checkpoint
    if cfg.trackers:
        run.accelerator.end_training()
    console.print(f"run folder: {run.dir}")
    return run.dir


def measure_inference(run: Run, backbone: Backbone, merges: bool, test: list):
    """eval.inference_cost: the trained model's prefill and decode cost on the test prompts
    (inference_cost.py), measured alone: the optimizer and gradients freed first. It merges the model in
    place, so it runs after everything that needs the adapter (saved, tested, forgetting measured)."""
    if not run.cfg.eval.inference_cost:
        return None
    inference_cost.release_training(run.accelerator, backbone.model)
    return inference_cost.measure(backbone, backbone.model, merges, [e.prompt for e in test])


def check_free_space(run: Run, task: Task, trainable: int) -> None:
    """Refuse to start what the disk cannot hold (diskspace.py: two checkpoints, the adapter, the
    predictions); the checkpoint a resumed run holds already is space it will write over."""
    test = limit(task.split("test"), run.cfg.eval.max_test)
    need = diskspace.run_bytes(trainable, diskspace.prediction_bytes(test, task.max_new_tokens))
    if run.main:
        diskspace.check_free_space(run.dir, need - checkpoint.disk_bytes(run.dir))


# ---- the optimization ---------------------------------------------------------------------------
@dataclass
class Loop:
    """What the optimizer steps work with, built once by ``fit``."""

    run: Run
    backbone: Backbone
    model: torch.nn.Module  # accelerate's wrapper of backbone.model (DDP with several processes)
    params: list[torch.nn.Parameter]  # the trainable ones, for gradient clipping
    optimizer: torch.optim.Optimizer
    lr: float  # the peak learning rate (train.lr or the method's default)
    budget: Budget
    sampler: EpochSampler
    count_flops: StepFlops  # analyses the model once; per step it is arithmetic
    head: torch.nn.Module | None
    hooks: LoopHooks | None = None  # what the method needs from the loop (AdaLoRA's rank allocator)
    base_lrs: list[float] = field(default_factory=list)  # each parameter group's peak lr
    current_lr: float = 0.0
    # The sampler's (epoch, offset) before the step drawn ahead (``upcoming``): what a checkpoint
    # saves, so that a resumed run draws that step again.
    position: tuple[int, int] = (0, 0)

    def __post_init__(self):
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]


def fit(
    run: Run,
    backbone: Backbone,
    method: Method,
    options,
    task: Task,
    lr: float,
    validate: Validation,
    memory: PeakMemory,
) -> tuple[TrainState, Budget, int]:
    """Optimizer steps until the budget is spent; returns (state, budget, training examples skipped as too long)."""
    cfg, core = run.cfg, backbone.model
    loader, sampler, skipped = build_loader(cfg, run.processes, backbone, task)
    state = TrainState()  # the run's counters: the budget reads what is spent from it
    budget = make_budget(cfg, loader, state)
    with backbone.numerics():  # the FLOP probe's forwards, like every other, in the run's compute dtype
        # Counts gradient checkpointing's recomputation too (it finds the checkpointed layers).
        step_flops = StepFlops(core, backbone.kind)
    loop = Loop(
        run,
        backbone,
        core,
        list(trainable_parameters(core).values()),
        build_optimizer(cfg, method, options, core, lr),
        lr,
        budget,
        sampler,
        step_flops,
        output_head(core),
        method.loop_hooks(core) if method.loop_hooks else None,
    )
    if run.resuming:
        resume_state(loop, state, memory)
    loop.model, loop.optimizer = run.accelerator.prepare(loop.model, loop.optimizer)
    loop.model.train()
    announce(loop, len(loader.dataset))
    if run.main and validate and cfg.eval.validate_untrained and state.step == 0:
        # The untrained model's score: each learning curve's point at 0 FLOPs. Not a candidate for
        # the kept weights: a run reports its method after training, and zero-shot is its own row.
        validate(state, select=False)
        loop.model.train()
    batches = batches_forever(loader)
    with progress() as bar, StopRequest() as stop:
        tid = bar.add_task("train", total=100, completed=100 * budget.progress, info="")
        coming = upcoming(loop, batches)
        while coming is not None and not rung.reached(cfg, budget):
            before = budget.progress
            with memory.step():
                loss = optimizer_step(loop, state, *coming, stop)
            # Drawn before after_step: whether this step was the last is known when it logs,
            # validates and checkpoints.
            coming = upcoming(loop, batches)
            bar.update(tid, completed=100 * budget.progress, info=f"step {state.step} loss {loss:.4f}")
            after_step(loop, state, loss, before, validate, memory, stop, bar)
    end_of_training(loop, state, validate, memory)
    return state, budget, skipped


def end_of_training(loop: Loop, state: TrainState, validate: Validation, memory: PeakMemory) -> None:
    """The budget spent: the last validation. A rung reached (train.stop_at): the stop there."""
    run, budget = loop.run, loop.budget
    if rung.reached(run.cfg, budget):
        return stop_at_rung(loop, state, validate, memory)
    amount, spent = budget.amount, budget.spent[budget.kind]
    console.print(
        f"budget spent: {spent:g} of {amount:g} {budget.kind} ({100 * spent / amount:.1f}%) in {state.step} steps"
    )
    if run.main and validate:
        validate(state, select=selectable(loop, state))


def announce(loop: Loop, n_examples: int) -> None:
    cfg, processes = loop.run.cfg, loop.run.processes
    console.print(
        f"training for {loop.budget.amount:g} {loop.budget.kind} x "
        f"{cfg.train.batch_size * processes * cfg.train.grad_accum} examples per step"
        f"{f' ({processes} processes)' if processes > 1 else ''}, lr {loop.lr:g} "
        f"({cfg.train.schedule}, warmup {cfg.train.warmup_ratio:g}); {n_examples} training examples"
    )


def selectable(loop: Loop, state: TrainState) -> bool:
    """Whether this step's weights may be kept as the best: always, unless the method says its model
    is not final yet (AdaLoRA before its rank budget is reached has more rank than it is allowed)."""
    return loop.hooks is None or loop.hooks.selectable(state.step)


def build_optimizer(
    cfg: ExperimentConfig, method: Method, options, model: torch.nn.Module, lr: float
) -> torch.optim.Optimizer:
    params = list(trainable_parameters(model).values())
    # Hybrids give each component its own group (soft prompts need ~30x LoRA's lr).
    groups = method.param_groups(model, options, lr) if method.param_groups else [{"params": params}]
    if cfg.train.weight_decay:
        # Weight matrices decay; soft prompts, prefixes, IA3 vectors, biases and norms do not (Method.decays).
        groups = method.decay_groups(model, options, groups)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.train.weight_decay)


def resume_state(loop: Loop, state: TrainState, memory: PeakMemory) -> None:
    """Continue from the run folder's checkpoint: weights, optimizer, counters (into ``state``, where
    the budget reads them), data order, RNG."""
    run = loop.run
    try:
        info, best = checkpoint.load(run.dir, trainable_parameters(loop.model), loop.optimizer, log=warn)
    except checkpoint.NoReadableCheckpoint as e:
        restart(run, e)
        return
    if run.main:  # the best weights of the checkpoint's moment (a later best is work now redone)
        checkpoint.reinstate_best(run.dir, best)
    if loop.hooks:
        loop.hooks.load_state(checkpoint.method_state(Path(info["folder"])))
    state.restore(info)
    loop.sampler.epoch, loop.sampler.offset = state.sampler
    memory.peak = max(memory.peak, state.peak_memory_bytes)  # a resumed run keeps its earlier peaks
    memory.train_peak = max(memory.train_peak, state.train_peak_memory_bytes)
    # Lines logged after the checkpoint belong to work that is now redone.
    records = [r for r in read_jsonl(run.files.metrics) if r["step"] <= state.step]
    if run.main:
        atomic_write_text(run.files.metrics, "".join(json.dumps(r) + "\n" for r in records))
    console.print(
        f"resuming from the checkpoint at step {state.step} ({100 * loop.budget.progress:.0f}% of the budget)"
    )


def warn(message: str) -> None:
    console.print(message, markup=False, style="yellow")


def restart(run: Run, why: Exception) -> None:
    """No checkpoint can be read: the run starts again from step 0 (its learning curve too), like a
    fresh run of the same config and seed (its state stays the fresh one)."""
    warn(f"{why}; starting the run again from step 0")
    if run.main:
        checkpoint.remove(run.dir)
        atomic_write_text(run.files.metrics, "")


def next_step(loop: Loop, batches) -> list[dict[str, torch.Tensor]]:
    """Every shard of the next optimizer step (all micro-batches, all processes): every process holds
    the whole step, so the counts need no communication."""
    return [shard for _ in range(loop.run.cfg.train.grad_accum) for shard in next(batches)]


def step_cost(loop: Loop, shards: list[dict]) -> dict[str, float]:
    """What a step will spend, known before it runs (its seconds are measured after)."""
    model_kind = loop.backbone.kind
    return {
        "steps": 1,
        "examples": sum(b["input_ids"].shape[0] for b in shards),
        "tokens": sum(model_kind.batch_tokens(b) for b in shards),  # prompt + target (encoder + decoder on seq2seq)
        "flops": sum(loop.count_flops(b) for b in shards),  # arithmetic on the shapes, outside the timed region
    }


def upcoming(loop: Loop, batches) -> tuple[list[dict], dict[str, float]] | None:
    """(shards, cost) of the next step, drawn ahead so that the budget decides, from its exact cost,
    whether it runs (budget.admit: the step boundary nearest the budget); None when it does not."""
    loop.position = (loop.sampler.epoch, loop.sampler.offset)
    shards = next_step(loop, batches)
    cost = step_cost(loop, shards)
    return (shards, cost) if loop.budget.admit(cost) else None


def optimizer_step(loop: Loop, state: TrainState, shards: list[dict], cost: dict, stop: StopRequest) -> float:
    """One optimizer step over this process's shards (``cost``: their ``step_cost``); counts it in
    ``state`` (the budget reads it there) and returns the training loss (the step's token mean)."""
    run, cfg, model_kind = loop.run, loop.run.cfg, loop.backbone.kind
    accelerator, processes, budget = run.accelerator, run.processes, loop.budget
    mine = [{k: v.to(accelerator.device) for k, v in s.items()} for s in shards[accelerator.process_index :: processes]]
    labelled = max(sum(model_kind.labelled_tokens(b) for b in shards), 1)
    # Warmup counts this step's exact share of the budget (budget.py: the schedule).
    factor = lr_factor(budget.progress, budget.step_fraction(cost), cfg.train.schedule, cfg.train.warmup_ratio)
    for group, base in zip(loop.optimizer.param_groups, loop.base_lrs):
        group["lr"] = base * factor
    with Stopwatch() as clock:
        summed = torch.zeros((), device=accelerator.device)
        for i, b in enumerate(mine):
            # Gradients are averaged over processes once per step, not per micro-batch.
            with accelerator.no_sync(loop.model) if i < len(mine) - 1 else contextlib.nullcontext():
                with loop.backbone.numerics():
                    part = model_kind.loss_sum(loop.model, loop.head, b)
                # Sum over the step's labelled tokens / their count: one big batch's mean, whatever
                # the split (DDP averages over processes, hence * processes).
                scaled = part * (processes / labelled)
                if i == 0 and loop.hooks:  # a method's own term (AdaLoRA's regulariser), once per step
                    scaled = scaled + loop.hooks.extra_loss()
                accelerator.backward(scaled)
            summed += part.detach()
        if cfg.train.max_grad_norm:
            accelerator.clip_grad_norm_(loop.params, cfg.train.max_grad_norm)
        loop.optimizer.step()
        if loop.hooks:  # before zero_grad: AdaLoRA scores its singular values by |w * grad|
            loop.hooks.after_optimizer_step(state.step)
        loop.optimizer.zero_grad(set_to_none=True)
        if processes > 1:
            summed = accelerator.reduce(summed, "sum")
        loss = float(summed) / labelled
    seconds = clock.seconds
    if processes > 1:  # the processes must agree on the budget and on a stop request
        shared = accelerator.reduce(torch.tensor([seconds, float(stop.signal or 0)], device=accelerator.device), "max")
        seconds, stop.signal = float(shared[0]), int(shared[1]) or None
    state.count_step(cost, seconds)
    loop.current_lr = loop.optimizer.param_groups[0]["lr"]
    return loss


def after_step(
    loop: Loop,
    state: TrainState,
    loss: float,
    before: float,
    validate: Validation,
    memory: PeakMemory,
    stop: StopRequest,
    bar,
) -> None:
    """Log, stop on a NaN loss, validate and checkpoint when due, stop when a signal asked to."""
    run, cfg, budget = loop.run, loop.run.cfg, loop.budget
    if state.step % cfg.train.log_every == 0 or budget.done:
        run.log({**state.record(), "lr": loop.current_lr, "train_loss": loss})
    if not math.isfinite(loss):
        kept = (
            f"the last good checkpoint is kept in {run.files.checkpoint}"
            if checkpoint.exists(run.dir)
            else "no checkpoint was saved before it"
        )
        raise PeftlabError(
            f"training diverged: loss is {loss} at step {state.step}; {kept}; lower train.lr (now {loop.lr:g})"
        )
    due = (cfg.train.eval_every and state.step % cfg.train.eval_every == 0) or crossed(
        before, budget.progress, cfg.train.evals or 0
    )
    if validate and due and not budget.done:
        if run.main:
            validate(state, bar, select=selectable(loop, state))
        loop.model.train()
    every = cfg.train.checkpoint_every
    if (
        cfg.train.checkpoint
        and not budget.done
        and ((validate and due) or (every and state.step % every == 0) or stop.signal)
    ):
        save_checkpoint(loop, state, memory)
    if stop.signal:
        raise PeftlabError(
            f"stopped by {signal.Signals(stop.signal).name} at step {state.step}; checkpoint "
            f"saved: continue with  peftlab train --resume {run.dir}"
        )


def stop_at_rung(loop: Loop, state: TrainState, validate: Validation, memory: PeakMemory) -> None:
    """train.stop_at (a rung of compare's lr search): the checkpoint first (what the search continues),
    then the validation there, recorded in rungs.jsonl (rung.py); no summary: the run is not finished."""
    run, budget = loop.run, loop.budget
    save_checkpoint(loop, state, memory)
    if run.main and not validate:
        raise PeftlabError("train.stop_at: a rung chooses on validation, and this task has no validation examples")
    if run.main:
        rung.record(run, state, validate, budget)
    if run.cfg.trackers:
        run.accelerator.end_training()
    console.print(
        f"stopped at {100 * budget.progress:.1f}% of the budget, step {state.step} (train.stop_at "
        f"{run.cfg.train.stop_at:g}): checkpoint kept; continue with a later stop_at or none (--resume)"
    )


def save_checkpoint(loop: Loop, state: TrainState, memory: PeakMemory) -> None:
    if not loop.run.main:
        return
    state.sampler = loop.position  # before the step drawn ahead
    state.peak_memory_bytes, state.train_peak_memory_bytes = memory.peak, memory.train_peak
    checkpoint.save(
        loop.run.dir,
        trainable_parameters(loop.backbone.model),
        loop.optimizer,
        checkpoint.best_file(loop.run.dir),
        state.to_json(),
        loop.hooks.state() if loop.hooks else None,
    )
