"""The training loop: one function, readable top to bottom.

    config -> task examples -> backbone (model + tokenizer) -> method.apply -> AdamW + schedule
    -> steps (accelerate: device placement, mixed precision on GPU, gradient accumulation)
    -> validation by free generation every eval_every steps; keep the best trainable weights
    -> restore the best, save the adapter, score the test split ONCE -> summary.json

Only the optimizer steps are timed (not evaluation, not logging), so "train seconds" is the cost
of training and nothing else.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from peftlab.batching import EpochSampler, ShardedCollate, batches_forever
from peftlab.config import ExperimentConfig, dump_config
from peftlab.console import console, progress
from peftlab.cost import PeakMemory, Stopwatch, dir_bytes
from peftlab.errors import PeftlabError
from peftlab.evaluate import generate_and_score, limit, show_scores
from peftlab.loss import labelled_tokens, loss_sum, output_head
from peftlab.methods import count_parameters, get_method, method_options, trainable_parameters
from peftlab.models import load_backbone
from peftlab.runio import (append_jsonl, atomic_write_text, environment, finished_with_config, read_jsonl,
                           write_json, write_predictions)
from peftlab.tasks.base import build_task


class EncodedExamples(torch.utils.data.Dataset):
    """Tokenizes an example the first time it is drawn: a 40-step run on a 12k-example split
    should not pay for tokenizing all 12k."""

    def __init__(self, examples, backbone, max_source_tokens: int, max_target_tokens: int):
        self.examples, self.backbone = examples, backbone
        self.limits = (max_source_tokens, max_target_tokens)
        self.cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        if i not in self.cache:
            e = self.examples[i]
            self.cache[i] = self.backbone.encode(e.prompt, e.target, *self.limits)
        return self.cache[i]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict:
    """Python, NumPy and torch random states as JSON-able lists (checkpoints hold no pickles)."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {"python": [version, list(state), gauss], "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "torch": torch.get_rng_state().tolist()}


def set_rng_states(states: dict) -> None:
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))


def prepare_run_dir(cfg: ExperimentConfig, overwrite: bool, resume: bool = False,
                    require_checkpoint: bool = False) -> tuple[Path, bool]:
    """(run folder, whether to resume from its checkpoint). A finished run is never overwritten
    unless asked; an unfinished one with a checkpoint of the same config is resumed when asked."""
    from peftlab import checkpoint

    run_dir = cfg.run_dir()
    finished, same = finished_with_config(run_dir, dump_config(cfg))
    if finished and not overwrite:
        raise PeftlabError(f"{run_dir} already holds a finished run; pass --overwrite or choose another --set name=...")
    if resume and not overwrite and same and checkpoint.exists(run_dir):
        return run_dir, True
    if require_checkpoint:
        raise PeftlabError(f"{run_dir}: no checkpoint to resume from (the run stopped before its first checkpoint, "
                           "or its config.yaml changed); start it again without --resume")
    try:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        atomic_write_text(run_dir / ".write-test", "ok")  # an unwritable or full disk fails here, not mid-run
        (run_dir / ".write-test").unlink()
    except OSError as e:
        raise PeftlabError(f"cannot write the run folder {run_dir}: {e.strerror or e} (check output_dir and free "
                           "disk space)") from None
    return run_dir, False


def check_free_space(run_dir: Path, trainable: int) -> None:
    """Checkpoints hold weights, AdamW's two moments and the best weights (4 fp32 copies), and the
    adapter one more: refuse to start a run that could not save them."""
    need = 5 * 4 * trainable + (1 << 20)
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise PeftlabError(f"{run_dir}: {free / 1e9:.2f} GB free but checkpoints and the adapter need about "
                           f"{need / 1e9:.2f} GB; free disk space or set output_dir elsewhere")


class StopRequest:
    """SIGTERM / SIGINT during training ask for a stop at the end of the current step, so the run can
    save a checkpoint first (a second signal stops at once)."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # asked twice: stop now
            signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def set_lr(optimizer, base_lrs: list[float], factor: float) -> float:
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
    return optimizer.param_groups[0]["lr"]


def train(cfg: ExperimentConfig, overwrite: bool = False, resume: bool = False,
          require_checkpoint: bool = False, allow_unsafe_pickle: bool = False) -> Path:
    """Train (or, for method 'none', only evaluate) one run; returns the run folder.

    With ``resume``, a run folder holding a checkpoint of the same config continues from it."""
    from accelerate import Accelerator, InitProcessGroupKwargs

    from peftlab import checkpoint
    from peftlab.budget import Budget, crossed, lr_factor
    from peftlab.flops import StepFlops

    method = get_method(cfg.method.name)
    options = method_options(cfg.method)
    task = build_task(cfg.task, log=console.print)  # before any writing: a data error leaves no half-made run folder
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=not cuda,
        mixed_precision="bf16" if cuda and cfg.model.dtype == "auto" else "no",
        log_with=cfg.trackers or None,
        project_dir=str(cfg.run_dir()),
        # Under `accelerate launch`, the other processes wait while the main one validates.
        kwargs_handlers=[InitProcessGroupKwargs(timeout=datetime.timedelta(hours=6))],
    )
    # Under `accelerate launch --num_processes N`: every process trains on its shard of each batch;
    # the main one alone writes files, validates and tests.
    processes, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    console.quiet = not main
    if main:
        run_dir, resuming = prepare_run_dir(cfg, overwrite, resume, require_checkpoint)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    accelerator.wait_for_everyone()
    if not main:
        run_dir = cfg.run_dir()
        resuming = resume and checkpoint.exists(run_dir)  # the main process removed any it will not resume
    metrics_path = run_dir / "metrics.jsonl"
    seed_everything(cfg.seed)
    if cfg.trackers:
        accelerator.init_trackers("tracking", config={"run": cfg.run_name(), "label": cfg.label or cfg.method.name,
                                                      "method": cfg.method.name, "seed": cfg.seed})
    backbone = load_backbone(cfg.model, device=accelerator.device, log=console.print,
                             allow_unsafe_pickle=allow_unsafe_pickle)
    if cuda and cfg.model.dtype == "auto":
        backbone.model.float()  # fp32 master weights; accelerate autocasts the matmuls to bf16
    if cfg.train.gradient_checkpointing:
        # Recompute each layer's activations in backward: less memory for ~1/3 more compute. Non-reentrant
        # checkpointing needs no input that requires grad, so frozen embeddings (every PEFT method) work.
        backbone.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = method.apply(backbone.model, options)
    backbone.model = core = model  # `model` becomes accelerate's wrapper (DDP with several processes); `core` stays
    trainable, total = count_parameters(model)
    check_free_space(run_dir, trainable)
    console.print(f"[bold]{cfg.run_name()}[/bold]: {method.name} on {cfg.model.name}, task {task.name}; "
                  f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.3f}%)")

    lr = cfg.train.lr if cfg.train.lr is not None else method.lr(options)
    ev = cfg.eval
    gen_kwargs = dict(batch_size=ev.batch_size, num_beams=ev.num_beams, max_source_tokens=cfg.task.max_source_tokens)
    validation = limit(task.splits.get("validation") or [], ev.max_validation)
    history: list[dict] = []
    best = {"score": -math.inf, "step": 0, "state": None, "scores": None}
    sign = 1 if task.higher_is_better else -1
    stopwatch = Stopwatch()
    step = examples_seen = tokens_seen = 0
    total_flops = skipped_long = 0
    budget = None

    def log_record(record: dict) -> None:
        if not main:
            return
        append_jsonl(metrics_path, record)
        if cfg.trackers:
            flat = {k: v for k, v in record.items() if isinstance(v, (int, float))}
            flat.update({f"validation/{k}": v for k, v in record.get("validation", {}).items()})
            accelerator.log(flat, step=record["step"])

    def validate(bar=None) -> None:
        scores, _ = generate_and_score(backbone, core, task, validation, label=f"validate @ step {step}",
                                       bar=bar, **gen_kwargs)
        show_scores(f"validation @ step {step}", scores, task.primary)
        record = {"step": step, "examples": examples_seen, "tokens": tokens_seen, "flops": total_flops,
                  "seconds": round(stopwatch.seconds, 3), "validation": scores}
        log_record(record)
        history.append(record)
        if sign * scores[task.primary] > best["score"]:
            # Keep a copy of the best trainable weights: the checkpoint is chosen on validation.
            best.update(score=sign * scores[task.primary], step=step, scores=scores,
                        state={n: p.detach().clone() for n, p in trainable_parameters(core).items()})

    with PeakMemory() as memory:
        if method.trains:
            train_examples = limit(task.split("train"), cfg.train.max_train_examples)
            if cfg.task.too_long == "skip":
                kept = [e for e in train_examples if not backbone.too_long(e.prompt, cfg.task.max_source_tokens)]
                skipped_long = len(train_examples) - len(kept)
                console.print(f"too_long: skip: {skipped_long} of {len(train_examples)} training examples are over "
                              f"{cfg.task.max_source_tokens} tokens and are skipped")
                train_examples = kept
            features = EncodedExamples(train_examples, backbone, cfg.task.max_source_tokens, cfg.task.max_target_tokens)
            per_step = cfg.train.batch_size * processes  # one loader batch = the global micro-batch
            # Characters stand in for tokens when grouping by length: no need to tokenize the whole split.
            lengths = [len(e.prompt) + len(e.target) for e in train_examples] if cfg.train.group_by_length else None
            # Grouped in units of a whole optimizer step: how a step is split (micro-batches, processes)
            # does not change which examples it holds.
            sampler = EpochSampler(len(features), cfg.seed, lengths, per_step * cfg.train.grad_accum)
            # Its own generator: a DataLoader iterator draws a seed when it starts (every epoch, and once
            # more on resume); from the global RNG that would shift dropout and break exact resumption.
            loader = DataLoader(features, batch_size=per_step, sampler=sampler, drop_last=processes > 1,
                                collate_fn=ShardedCollate(backbone.collate, cfg.train.batch_size, processes),
                                generator=torch.Generator().manual_seed(cfg.seed))
            if processes > 1 and len(loader) == 0:
                raise PeftlabError(f"{len(features)} training examples cannot fill one batch of {cfg.train.batch_size} "
                                   f"per process x {processes} processes; lower train.batch_size")
            kind, amount = cfg.train.budget()
            if kind == "epochs":
                kind, amount = "steps", math.ceil(amount * max(len(loader) // cfg.train.grad_accum, 1))
            budget = Budget(kind, amount)
            params = list(trainable_parameters(model).values())
            # Hybrids give each component its own group (soft prompts need ~30x LoRA's lr).
            groups = method.param_groups(model, options, lr) if method.param_groups else [{"params": params}]
            optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.train.weight_decay)
            base_lrs = [g["lr"] for g in optimizer.param_groups]
            count_flops = StepFlops(model, backbone.is_seq2seq)  # analyses the model once; per step: arithmetic
            head = output_head(model)
            if resuming:
                info, best_state = checkpoint.load(run_dir, trainable_parameters(model), optimizer)
                step, examples_seen, tokens_seen, total_flops = (info["step"], info["examples"], info["tokens"],
                                                                 info["flops"])
                budget.spent.update(info["budget_spent"])
                stopwatch.seconds = info["seconds"]
                sampler.epoch, sampler.offset = info["sampler"]
                best.update(score=info["best_score"], step=info["best_step"], scores=info["best_scores"],
                            state=best_state)
                memory.peak = max(memory.peak, info.get("peak_memory_bytes", 0))
                set_rng_states(info["rng"])
                # Lines logged after the checkpoint belong to work that is now redone.
                records = [r for r in read_jsonl(metrics_path) if r["step"] <= step]
                if main:
                    atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in records))
                history.extend(r for r in records if "validation" in r)
                console.print(f"resuming from the checkpoint at step {step} ({100 * budget.progress:.0f}% of the budget)")
            model, optimizer = accelerator.prepare(model, optimizer)
            model.train()
            console.print(f"training for {amount:g} {kind} x {per_step * cfg.train.grad_accum} examples per step"
                          f"{f' ({processes} processes)' if processes > 1 else ''}, lr {lr:g} ({cfg.train.schedule}, "
                          f"warmup {cfg.train.warmup_ratio:g}); {len(features)} training examples")
            batches = batches_forever(loader)
            seq2seq = backbone.is_seq2seq

            def save_checkpoint() -> None:
                if not main:
                    return
                checkpoint.save(run_dir, trainable_parameters(core), optimizer, best["state"], {
                    "step": step, "examples": examples_seen, "tokens": tokens_seen, "flops": total_flops,
                    "seconds": stopwatch.seconds, "budget_spent": budget.spent, "sampler": [sampler.epoch, sampler.offset],
                    "best_score": best["score"], "best_step": best["step"], "best_scores": best["scores"],
                    "peak_memory_bytes": memory.peak, "rng": rng_states()})

            with progress() as bar, StopRequest() as stop:
                tid = bar.add_task("train", total=100, completed=100 * budget.progress, info="")
                while not budget.done:
                    # Every process holds the whole step (all shards), so the counts need no communication.
                    shards = [s for _ in range(cfg.train.grad_accum) for s in next(batches)]
                    mine = [{k: v.to(accelerator.device) for k, v in shard.items()}
                            for shard in shards[rank::processes]]
                    labelled = max(sum(labelled_tokens(b, seq2seq) for b in shards), 1)
                    step_flops = sum(count_flops(b) for b in shards)  # outside the timed region
                    current_lr = set_lr(optimizer, base_lrs, lr_factor(budget.progress, budget.step_fraction(),
                                                                        cfg.train.schedule, cfg.train.warmup_ratio))
                    before, t0 = budget.progress, stopwatch.seconds
                    with stopwatch:
                        summed = torch.zeros((), device=accelerator.device)
                        for i, b in enumerate(mine):
                            # Gradients are averaged over processes once per step, not per micro-batch.
                            with accelerator.no_sync(model) if i < len(mine) - 1 else contextlib.nullcontext():
                                part = loss_sum(model, head, b, seq2seq)
                                # Sum over the step's labelled tokens / their count: one big batch's mean,
                                # whatever the split (DDP averages over processes, hence * processes).
                                accelerator.backward(part * (processes / labelled))
                            summed += part.detach()
                        if cfg.train.max_grad_norm:
                            accelerator.clip_grad_norm_(params, cfg.train.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                        if processes > 1:
                            summed = accelerator.reduce(summed, "sum")
                        train_loss = float(summed) / labelled
                    step_seconds = stopwatch.seconds - t0
                    if processes > 1:  # the processes must agree on the budget and on a stop request
                        shared = accelerator.reduce(torch.tensor([step_seconds, float(stop.signal or 0)],
                                                                 device=accelerator.device), "max")
                        step_seconds, stop.signal = float(shared[0]), int(shared[1]) or None
                    step += 1
                    n_examples = sum(b["input_ids"].shape[0] for b in shards)
                    n_tokens = sum(int(b["attention_mask"].sum()) for b in shards)
                    examples_seen, tokens_seen, total_flops = (examples_seen + n_examples, tokens_seen + n_tokens,
                                                               total_flops + step_flops)
                    budget.add(steps=1, examples=n_examples, tokens=n_tokens, flops=step_flops, seconds=step_seconds)
                    bar.update(tid, completed=100 * budget.progress, info=f"step {step} loss {train_loss:.4f}")
                    if step % cfg.train.log_every == 0 or budget.done:
                        log_record({"step": step, "examples": examples_seen, "tokens": tokens_seen,
                                    "flops": total_flops, "seconds": round(stopwatch.seconds, 3), "lr": current_lr,
                                    "train_loss": train_loss})
                    if not math.isfinite(train_loss):
                        kept = (f"the last good checkpoint is kept in {run_dir / checkpoint.NAME}"
                                if checkpoint.exists(run_dir) else "no checkpoint was saved before it")
                        raise PeftlabError(f"training diverged: loss is {train_loss} at step {step}; {kept}; "
                                           f"lower train.lr (now {lr:g})")
                    due = (cfg.train.eval_every and step % cfg.train.eval_every == 0) or \
                        crossed(before, budget.progress, cfg.train.evals or 0)
                    if validation and due and not budget.done:
                        if main:
                            validate(bar)
                        model.train()
                    every = cfg.train.checkpoint_every
                    if cfg.train.checkpoint and not budget.done and (
                            (validation and due) or (every and step % every == 0) or stop.signal):
                        save_checkpoint()
                    if stop.signal:
                        raise PeftlabError(f"stopped by {signal.Signals(stop.signal).name} at step {step}; checkpoint "
                                           f"saved: continue with  peftlab train --resume {run_dir}")
            if not main:
                return run_dir  # the main process validates, tests and writes the summary
            if validation:
                validate()
            model = core
            if best["state"] is not None:
                with torch.no_grad():
                    for name, p in trainable_parameters(model).items():
                        p.copy_(best["state"][name])
                console.print(f"best validation {task.primary} = {sign * best['score']:.4f} at step {best['step']} "
                              "(restored)")
        model.eval()
        method.save(model, run_dir / "adapter")

        test = limit(task.split("test"), ev.max_test)
        test_scores, test_preds = generate_and_score(backbone, model, task, test, label="test", **gen_kwargs)
    write_predictions(run_dir / "predictions.csv", test, test_preds, task.per_example(test_preds, test))
    show_scores(f"{cfg.run_name()} test", test_scores, task.primary)

    summary = {
        "run": cfg.run_name(),
        "method": method.name,
        "label": cfg.label or method.name,
        "task": task.name,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "primary_metric": task.primary,
        "higher_is_better": task.higher_is_better,
        "test": test_scores,
        "test_examples": len(test),
        "best_validation": best["scores"],
        "best_step": best["step"],
        "budget": {"kind": budget.kind, "amount": budget.amount} if budget else None,
        "steps": step,
        "processes": processes,
        "flops": total_flops,
        "flops_per_step": total_flops / step if step else None,
        "examples_seen": examples_seen,
        "tokens_seen": tokens_seen,
        "lr": lr if method.trains else None,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": 100 * trainable / total,
        "adapter_bytes": dir_bytes(run_dir / "adapter"),
        "train_seconds": round(stopwatch.seconds, 3),
        "train_examples_per_s": examples_seen / stopwatch.seconds if stopwatch.seconds else None,
        "train_tokens_per_s": tokens_seen / stopwatch.seconds if stopwatch.seconds else None,
        "peak_memory_bytes": memory.peak,
        "peak_memory_kind": memory.kind,
        "truncated_inputs": backbone.truncated,
        "skipped_long_train_examples": skipped_long,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **environment(),
    }
    write_json(run_dir / "summary.json", summary)
    checkpoint.remove(run_dir)  # the run is finished: its adapter and summary replace the checkpoint
    if cfg.trackers:
        accelerator.end_training()
    console.print(f"run folder: {run_dir}")
    return run_dir
