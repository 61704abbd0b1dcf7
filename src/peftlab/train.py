"""The training loop: one function, readable top to bottom.

    config -> task examples -> backbone (model + tokenizer) -> method.apply -> AdamW + schedule
    -> steps (accelerate: device placement, mixed precision on GPU, gradient accumulation)
    -> validation by free generation every eval_every steps; keep the best trainable weights
    -> restore the best, save the adapter, score the test split ONCE -> summary.json

Only the optimizer steps are timed (not evaluation, not logging), so "train seconds" is the cost
of training and nothing else.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from peftlab.config import ExperimentConfig, dump_config
from peftlab.console import console, progress
from peftlab.cost import PeakMemory, Stopwatch, dir_bytes
from peftlab.errors import PeftlabError
from peftlab.evaluate import generate_and_score, limit, show_scores
from peftlab.methods import count_parameters, get_method, method_options, trainable_parameters
from peftlab.models import load_backbone
from peftlab.runio import append_jsonl, atomic_write_text, environment, write_json, write_predictions
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


def prepare_run_dir(cfg: ExperimentConfig, overwrite: bool) -> Path:
    run_dir = cfg.run_dir()
    if (run_dir / "summary.json").exists() and not overwrite:
        raise PeftlabError(f"{run_dir} already holds a finished run; pass --overwrite or choose another --set name=...")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return run_dir


def train(cfg: ExperimentConfig, overwrite: bool = False) -> Path:
    """Train (or, for method 'none', only evaluate) one run; returns the run folder."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    method = get_method(cfg.method.name)
    options = method_options(cfg.method)
    task = build_task(cfg.task, log=console.print)  # before any writing: a data error leaves no half-made run folder
    run_dir = prepare_run_dir(cfg, overwrite)
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    metrics_path = run_dir / "metrics.jsonl"
    seed_everything(cfg.seed)

    cuda = torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=not cuda,
        mixed_precision="bf16" if cuda and cfg.model.dtype == "auto" else "no",
        gradient_accumulation_steps=cfg.train.grad_accum,
    )
    backbone = load_backbone(cfg.model, device=accelerator.device, log=console.print)
    if cuda and cfg.model.dtype == "auto":
        backbone.model.float()  # fp32 master weights; accelerate autocasts the matmuls to bf16
    model = method.apply(backbone.model, options)
    backbone.model = model
    trainable, total = count_parameters(model)
    console.print(f"[bold]{cfg.run_name()}[/bold]: {method.name} on {cfg.model.name}, task {task.name}; "
                  f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.3f}%)")

    lr = cfg.train.lr if cfg.train.lr is not None else method.lr(options)
    ev = cfg.eval
    gen_kwargs = dict(batch_size=ev.batch_size, num_beams=ev.num_beams, max_source_tokens=cfg.task.max_source_tokens)
    validation = limit(task.splits.get("validation") or [], ev.max_validation)
    history: list[dict] = []
    best = {"score": -math.inf, "step": 0, "state": None, "scores": None}
    stopwatch = Stopwatch()
    step = examples_seen = tokens_seen = 0

    def validate(bar=None) -> None:
        scores, _ = generate_and_score(backbone, model, task, validation, label=f"validate @ step {step}",
                                       bar=bar, **gen_kwargs)
        show_scores(f"validation @ step {step}", scores, task.primary)
        record = {"step": step, "examples": examples_seen, "tokens": tokens_seen,
                  "seconds": round(stopwatch.seconds, 3), "validation": scores}
        append_jsonl(metrics_path, record)
        history.append(record)
        if scores[task.primary] > best["score"]:
            # Keep a copy of the best trainable weights: the checkpoint is chosen on validation.
            best.update(score=scores[task.primary], step=step, scores=scores,
                        state={n: p.detach().clone() for n, p in trainable_parameters(model).items()})

    with PeakMemory() as memory:
        if method.trains:
            train_examples = limit(task.split("train"), cfg.train.max_train_examples)
            features = EncodedExamples(train_examples, backbone, cfg.task.max_source_tokens, cfg.task.max_target_tokens)
            loader = DataLoader(features, batch_size=cfg.train.batch_size, shuffle=True, collate_fn=backbone.collate,
                                generator=torch.Generator().manual_seed(cfg.seed))
            steps_per_epoch = max(len(loader) // cfg.train.grad_accum, 1)
            total_steps = cfg.train.max_steps or math.ceil(cfg.train.epochs * steps_per_epoch)
            params = list(trainable_parameters(model).values())
            # Hybrids give each component its own group (soft prompts need ~30x LoRA's lr).
            groups = method.param_groups(model, options, lr) if method.param_groups else [{"params": params}]
            optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.train.weight_decay)
            scheduler = get_scheduler(
                "constant_with_warmup" if cfg.train.schedule == "constant" else cfg.train.schedule,
                optimizer, num_warmup_steps=int(cfg.train.warmup_ratio * total_steps), num_training_steps=total_steps,
            )
            model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
            model.train()
            console.print(f"training {total_steps} steps x {cfg.train.batch_size * cfg.train.grad_accum} examples, "
                          f"lr {lr:g} ({cfg.train.schedule}, warmup {cfg.train.warmup_ratio:g}); "
                          f"{len(features)} training examples")
            with progress() as bar:
                tid = bar.add_task("train", total=total_steps, info="")
                losses: list[float] = []
                while step < total_steps:
                    for batch in loader:
                        with stopwatch, accelerator.accumulate(model):
                            loss = model(**batch).loss
                            accelerator.backward(loss)
                            if accelerator.sync_gradients and cfg.train.max_grad_norm:
                                accelerator.clip_grad_norm_(params, cfg.train.max_grad_norm)
                            optimizer.step()
                            scheduler.step()
                            optimizer.zero_grad(set_to_none=True)
                        losses.append(loss.item())
                        examples_seen += batch["input_ids"].shape[0]
                        tokens_seen += int(batch["attention_mask"].sum())
                        if not accelerator.sync_gradients:
                            continue
                        step += 1
                        train_loss = sum(losses) / len(losses)
                        losses.clear()
                        bar.update(tid, advance=1, info=f"loss {train_loss:.4f}")
                        if step % cfg.train.log_every == 0 or step == total_steps:
                            append_jsonl(metrics_path, {
                                "step": step, "examples": examples_seen, "tokens": tokens_seen,
                                "seconds": round(stopwatch.seconds, 3), "lr": scheduler.get_last_lr()[0],
                                "train_loss": train_loss})
                        if not math.isfinite(train_loss):
                            raise PeftlabError(f"training diverged: loss is {train_loss} at step {step}; "
                                               f"lower train.lr (now {lr:g})")
                        if validation and cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < total_steps:
                            validate(bar)
                            model.train()
                        if step >= total_steps:
                            break
            if validation:
                validate()
            model = accelerator.unwrap_model(model)
            if best["state"] is not None:
                with torch.no_grad():
                    for name, p in trainable_parameters(model).items():
                        p.copy_(best["state"][name])
                console.print(f"best validation {task.primary} = {best['score']:.4f} at step {best['step']} (restored)")
        model.eval()
        method.save(model, run_dir / "adapter")

        test = limit(task.split("test"), ev.max_test)
        test_scores, test_preds = generate_and_score(backbone, model, task, test, label="test", **gen_kwargs)
    write_predictions(run_dir / "predictions.csv", test, test_preds, task.per_example(test_preds, test))
    show_scores(f"{cfg.run_name()} test", test_scores, task.primary)

    summary = {
        "run": cfg.run_name(),
        "method": method.name,
        "task": task.name,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "primary_metric": task.primary,
        "higher_is_better": task.higher_is_better,
        "test": test_scores,
        "test_examples": len(test),
        "best_validation": best["scores"],
        "best_step": best["step"],
        "steps": step,
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
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **environment(),
    }
    write_json(run_dir / "summary.json", summary)
    console.print(f"run folder: {run_dir}")
    return run_dir
