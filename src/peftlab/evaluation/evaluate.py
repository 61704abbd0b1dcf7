"""Scoring by free generation: the model writes its answer, the task's metric scores the text.

Never teacher-forced argmax (which shows the model the gold prefix at every position and so
overstates quality). Checkpoints are chosen on validation; test is scored once, at the end.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from torch import nn

from peftlab.config import DEFAULT_KV_CACHE_GB, load_config
from peftlab.console import console, progress
from peftlab.errors import PeftlabError
from peftlab.measure.precision import run_dtypes, store_frozen_linears
from peftlab.methods import get_method, method_options
from peftlab.models.backbone import Backbone
from peftlab.models.loading import check_remote_code, load_as_trained, refuse_pickle
from peftlab.rundir.folder import RunDir
from peftlab.rundir.runio import write_json, write_predictions
from peftlab.rundir.safe_read import check_adapter
from peftlab.tasks import loglik
from peftlab.tasks.base import Example, Task, build_task


def generate_and_score(
    backbone: Backbone,
    model: nn.Module,
    task: Task,
    examples: list[Example],
    *,
    batch_size: int,
    num_beams: int,
    max_source_tokens: int,
    label: str,
    bar=None,
    share_prefix: bool = True,
    kv_cache_gb: float | None = None,
) -> tuple[dict, list[str]]:
    t0 = time.perf_counter()
    # rich allows one live display at a time: inside training, add a row to the training bar.
    with contextlib.nullcontext(bar) if bar is not None else progress() as live:
        if task.output_type != "generate":  # the bar counts (example, option) pairs scored
            options = [task.label_words if task.output_type == "classify" else e.choices for e in examples]
            tid = live.add_task(
                f"{label} (options)", total=loglik.pairs_to_score(len(examples), options, task.content_free), info=""
            )
            preds = rank_options(
                backbone,
                model,
                task,
                examples,
                batch_size,
                max_source_tokens,
                progress=lambda n: live.advance(tid, n),
                kv_cache_gb=kv_cache_gb,
            )
        else:
            tid = live.add_task(label, total=len(examples), info="")
            preds = backbone.generate(
                model,
                [e.prompt for e in examples],
                max_new_tokens=task.max_new_tokens,
                batch_size=batch_size,
                num_beams=num_beams,
                max_source_tokens=max_source_tokens,
                progress=lambda n: live.advance(tid, n),
                share_prefix=share_prefix,
                kv_cache_gb=kv_cache_gb,
            )
        if bar is not None:
            live.remove_task(tid)
    scores = task.score(preds, examples)
    scores["seconds"] = time.perf_counter() - t0
    return scores, preds


def rank_options(
    backbone: Backbone,
    model: nn.Module,
    task: Task,
    examples: list[Example],
    batch_size: int,
    max_source_tokens: int,
    progress: Callable[[int], None] = lambda n: None,
    kv_cache_gb: float | None = DEFAULT_KV_CACHE_GB,
) -> list[str]:
    """Classification and multiple choice by log-likelihood: every prediction is a valid option."""

    prompts = [e.prompt for e in examples]
    if task.output_type == "classify":
        return loglik.classify(
            backbone,
            model,
            prompts,
            task.label_words,
            batch_size=batch_size,
            max_source_tokens=max_source_tokens,
            content_free=task.content_free,
            progress=progress,
            kv_cache_gb=kv_cache_gb,
        )
    picks = loglik.multiple_choice(
        backbone,
        model,
        prompts,
        [e.choices for e in examples],
        batch_size=batch_size,
        max_source_tokens=max_source_tokens,
        content_free=task.content_free,
        progress=progress,
        kv_cache_gb=kv_cache_gb,
    )
    return [e.choices[i] for e, i in zip(examples, picks)]


def limit(examples: list[Example], n: int | None) -> list[Example]:
    return examples if n is None else examples[:n]


def show_scores(label: str, scores: dict, primary: str) -> None:
    others = ", ".join(f"{k}={v:.4f}" for k, v in scores.items() if k not in (primary, "seconds"))
    console.print(f"{label}: [bold]{primary}={scores[primary]:.4f}[/bold] {others} ({scores['seconds']:.1f} s)")


def eval_run(
    run_dir: Path,
    split: str = "test",
    limit_n: int | None = None,
    log=console.print,
    num_beams: int | None = None,
    allow_unsafe_pickle: bool = False,
    overwrite: bool = False,
) -> dict:
    """Load a finished run (base model + its adapter) and score one split; writes predictions_<split>.csv
    and eval_<split>.json (``_beamN`` when a beam width other than the run's is asked for). An earlier
    result of the same name is kept unless ``overwrite``: checked before the model loads."""
    run_dir = Path(run_dir)
    if limit_n is not None and limit_n < 1:
        raise PeftlabError(f"--limit: must be a whole number >= 1 (the examples to score), got {limit_n}")
    if num_beams is not None and num_beams < 1:
        raise PeftlabError(f"--num-beams: must be a whole number >= 1 (1 = greedy), got {num_beams}")
    cfg = load_run_config(run_dir)
    beams = num_beams if num_beams is not None else cfg.eval.num_beams
    suffix = split if beams == cfg.eval.num_beams else f"{split}_beam{beams}"
    predictions_path, scores_path = RunDir(run_dir).eval_predictions(suffix), RunDir(run_dir).eval_scores(suffix)
    if not overwrite:
        refuse_overwrite([predictions_path, scores_path])
    cfg, backbone = load_run(run_dir, log=log, allow_unsafe_pickle=allow_unsafe_pickle)
    model = backbone.model
    task = build_task(cfg.task)
    n = limit_n if limit_n is not None else (cfg.eval.max_validation if split == "validation" else cfg.eval.max_test)
    examples = limit(task.split(split), n)
    scores, preds = generate_and_score(
        backbone,
        model,
        task,
        examples,
        batch_size=cfg.eval.batch_size,
        num_beams=beams,
        max_source_tokens=cfg.task.max_source_tokens,
        label=f"eval {split}",
        share_prefix=cfg.eval.share_prefix,
        kv_cache_gb=cfg.eval.kv_cache_gb,
    )
    write_predictions(predictions_path, examples, preds, task.per_example(preds, examples))
    write_json(scores_path, {"split": split, "examples": len(examples), "num_beams": beams, "scores": scores})
    show_scores(f"{cfg.run_name()} {split}", scores, task.primary)
    return scores


def refuse_overwrite(paths: list[Path]) -> None:
    """An earlier eval's result is a measurement someone may cite: replacing it takes --overwrite."""
    existing = [p for p in paths if p.exists()]
    if existing:
        raise PeftlabError(
            f"{', '.join(map(str, existing))}: an earlier eval's result is there; pass --overwrite to replace "
            "it, or move it away first (nothing was loaded or written)"
        )


def load_run(run_dir: Path, model_cfg=None, device=None, log=console.print, allow_unsafe_pickle: bool = False):
    """(config, backbone) of a finished run: the base model with the run's adapter loaded onto it, held
    as training held it (load_as_trained: the weights dtype, train.precision's autocast, frozen linears
    stored in bf16 under it), so its scores reproduce summary.json's. ``model_cfg`` overrides the run's
    model section (e.g. float32 for merging): then the frozen weights keep that dtype. An adapter stored
    only as pickle is refused unless ``allow_unsafe_pickle``."""

    cfg, adapter = load_run_config(run_dir), RunDir(run_dir).adapter
    refuse_pickle(adapter, "adapter", allow_unsafe_pickle)
    check_adapter(adapter, Path(run_dir))  # a damaged file named before the model loads
    method, options = get_method(cfg.method.name), method_options(cfg.method)
    held = model_cfg or cfg.model
    backbone = load_as_trained(
        held,
        cfg.train.precision,
        device=device,
        log=log,
        allow_unsafe_pickle=allow_unsafe_pickle,
        quantization=method.quantization(options, run_dtypes(held.dtype, cfg.train.precision, "cpu")[0]),
    )
    model = method.load(backbone.model, adapter, options)
    backbone.model = model.to(backbone.device)
    if model_cfg is None:  # as training stored them: same bits, no recast per generated token
        store_frozen_linears(backbone.model, backbone.compute_dtype)
    return cfg, backbone


def run_config_path(run_dir: Path) -> Path:

    path = RunDir(run_dir).config
    if not path.is_file():
        raise PeftlabError(f"{run_dir}: not a run folder (no config.yaml); give a folder written by `peftlab train`")
    return path


def load_run_config(run_dir: Path):

    path = run_config_path(run_dir)
    if not RunDir(run_dir).adapter.is_dir():
        raise PeftlabError(f"{run_dir}: the run has no adapter/ folder (did training finish?)")
    cfg = load_config(path)
    check_remote_code(cfg.model, path)  # eval, generate, merge, attribute: before a model loads or a file is written
    return cfg
