"""General abilities after fine-tuning, scored by lm-evaluation-harness (the optional `lm_eval` extra).

An experiment's ``general: {lm_eval: {tasks: [...], limit: N, include_path: DIR}}`` scores, after the
runs have trained, every finished run (base + adapter, as ``load_run`` holds it) and the base model on
lm-eval tasks. The already-loaded model and tokenizer are handed to lm-eval's HFLM wrapper, so peftlab's
own loading (adapter, dtype, autocast) is what is scored, and nothing is downloaded for the model.

Written atomically: ``<run>/lm_eval.json`` per run and ``<comparison>/lm_eval_base.json`` for the base,
each ``{"settings": {...}, "scores": {task: {metric: value}}, "stderr": {...}, "n": {task: count}}``;
a file with the same settings is reused when compare is rerun. The report reads them (report/general.py).

Local tasks: ``include_path`` is a folder of lm-eval task YAMLs; relative ``data_files`` in them are
read relative to that folder (the scoring runs with it as the working directory), so a task over a
JSONL file next to its YAML works offline. Task names are checked against lm-eval's TaskManager when
the experiment is loaded, and a method lm-eval would score wrongly (virtual tokens before the input
shift every logit lm-eval reads) is refused before anything trains.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import logging
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from peftlab.errors import PeftlabError

RUN_FILE = "lm_eval.json"  # in each run folder
BASE_FILE = "lm_eval_base.json"  # in the comparison folder
INSTALL = "pip install 'peftlab[lm_eval]' (or pip install 'lm-eval>=0.4,<0.5')"


class LmEvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(min_length=1, description="lm-eval task names (`lm-eval ls tasks`, or include_path's).")
    limit: StrictInt | None = Field(None, ge=1, description="At most this many documents per task (all if unset).")
    include_path: str | None = Field(None, description="A folder of local lm-eval task YAMLs (offline tasks).")
    batch_size: int = Field(8, ge=1, description="HFLM's batch size.")
    num_fewshot: int | None = Field(None, ge=0, description="Few-shot examples (the task's own default if unset).")

    def settings(self) -> dict:
        """What a stored result must match to be reused."""
        return self.model_dump(mode="json", exclude={"batch_size"})


class GeneralConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lm_eval: LmEvalConfig | None = Field(None, description="Score every run and the base with lm-eval tasks.")


def _lm_eval():
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise PeftlabError(f"general.lm_eval needs lm-evaluation-harness, which is not installed: {INSTALL}") from None
    return lm_eval, TaskManager


def include_dir(cfg: LmEvalConfig, source: str) -> Path | None:
    if cfg.include_path is None:
        return None
    path = Path(cfg.include_path).expanduser().resolve()
    if not path.is_dir():
        raise PeftlabError(f"{source}: general.lm_eval.include_path: {cfg.include_path} is not a folder")
    return path


def task_manager(cfg: LmEvalConfig, source: str):
    folder = include_dir(cfg, source)
    return _indexed(str(folder) if folder else None)


@functools.lru_cache(maxsize=4)
def _indexed(include_path: str | None):
    """lm-eval's TaskManager, indexed once per include folder and process: indexing reads every task
    YAML lm-eval ships (seconds), and compare checks the names before it scores with them."""
    _, TaskManager = _lm_eval()
    return TaskManager(include_path=include_path)


def check_tasks(general: GeneralConfig | None, source: str) -> None:
    """Every task name known to lm-eval (its own tasks, groups and tags, plus include_path's): else a
    PeftlabError naming each missing one with the closest known names. Nothing to check without a section."""
    if general is None or general.lm_eval is None:
        return
    cfg = general.lm_eval
    known = task_manager(cfg, source).all_tasks
    missing = [t for t in cfg.tasks if t not in known]
    if not missing:
        return
    lines = []
    for name in missing:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        lines.append(f"{name!r}" + (f" (close: {', '.join(close)})" if close else " (no close name)"))
    raise PeftlabError(
        f"{source}: general.lm_eval.tasks: unknown to lm-eval: {'; '.join(lines)}. "
        "`lm-eval ls tasks` lists its tasks; local task YAMLs go in general.lm_eval.include_path"
    )


def check_methods(general: GeneralConfig | None, configs: list, source: str) -> None:
    """Refuse, before training, a run whose model lm-eval would score wrongly: soft prompts (virtual
    tokens before the input) lengthen the logits HFLM slices by input position."""
    if general is None or general.lm_eval is None:
        return
    from peftlab.methods import get_method, method_options
    from peftlab.methods.base import Hook

    bad = sorted(
        {
            cfg.label or cfg.method.name
            for cfg in configs
            if Hook.INPUT_EMBEDDINGS in get_method(cfg.method.name).hooks_of(method_options(cfg.method))
        }
    )
    if bad:
        raise PeftlabError(
            f"{source}: general.lm_eval cannot score {', '.join(bad)}: the method puts virtual tokens before the "
            "input, which lm-eval's HFLM does not know of (its log-likelihoods would read the wrong positions). "
            "Leave these methods out of this experiment, or drop the general section"
        )


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer's own special tokens are a BOS in front (Llama, Gemma): then HFLM keeps it.
    Otherwise HFLM must add none, since a tokenizer that appends EOS (T5's, the tiny models' ByT5) would
    end every context with it and shift the continuation by a token."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def flatten(results: dict) -> tuple[dict, dict, dict]:
    """lm-eval's results -> ({task: {metric: value}}, {task: {metric: stderr}}, {task: n documents})."""
    scores, errs, counts = {}, {}, {}
    for task, row in results["results"].items():
        for key, value in row.items():
            if "," not in key or not isinstance(value, int | float):
                continue
            metric, filt = key.split(",", 1)
            name = metric.removesuffix("_stderr") + ("" if filt == "none" else f" ({filt})")
            (errs if metric.endswith("_stderr") else scores).setdefault(task, {})[name] = float(value)
    for task, n in (results.get("n-samples") or {}).items():
        counts[task] = n.get("effective")
    return scores, errs, counts


def score(backbone, cfg: LmEvalConfig, source: str = "general.lm_eval", manager=None) -> dict:
    """Score the loaded model (``backbone.model``, adapter and all) on the tasks; returns the record
    written to lm_eval.json. ``manager``: a TaskManager to reuse (indexing lm-eval's tasks takes seconds)."""
    lm_eval, _ = _lm_eval()
    from lm_eval.models.huggingface import HFLM

    manager = manager or task_manager(cfg, source)
    folder = include_dir(cfg, source)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    tok = backbone.tokenizer
    # HFLM wraps every forward in its own autocast, disabled unless given a dtype: the run's compute dtype
    # (bf16 over frozen bf16 linears, as it trained), else an fp32 autocast-off pass would meet bf16 weights.
    lm = HFLM(
        pretrained=backbone.model,
        tokenizer=tok,
        batch_size=cfg.batch_size,
        add_bos_token=adds_bos(tok),
        mixed_precision_dtype=backbone.compute_dtype,
    )
    backbone.model.eval()
    with contextlib.chdir(folder) if folder else contextlib.nullcontext(), backbone.numerics():
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(cfg.tasks),
            limit=cfg.limit,
            num_fewshot=cfg.num_fewshot,
            task_manager=manager,
            log_samples=False,
            bootstrap_iters=1000,
            verbosity="ERROR",
        )
    scores, errs, counts = flatten(results)
    return {
        "settings": cfg.settings(),
        "lm_eval_version": getattr(lm_eval, "__version__", None),
        "scores": scores,
        "stderr": errs,
        "n": counts,
    }


def stored(path: Path, cfg: LmEvalConfig) -> bool:
    """Whether ``path`` holds a result made with the same settings (then it is reused)."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8")).get("settings") == cfg.settings()
    except (OSError, ValueError, AttributeError):
        return False


def score_comparison(general: GeneralConfig | None, folder: Path, run_dirs: list[Path], log, source: str) -> None:
    """After training: each finished run of ``run_dirs`` into its lm_eval.json, the base model (the first
    run's model section) into ``folder``/lm_eval_base.json. A result with the same settings is kept.
    Nothing without a general.lm_eval section."""
    if general is None or general.lm_eval is None:
        return
    cfg = general.lm_eval
    from peftlab.evaluation.evaluate import load_run, load_run_config
    from peftlab.models.loading import load_as_trained
    from peftlab.rundir.folder import RunDir
    from peftlab.rundir.runio import write_json

    done = [d for d in run_dirs if RunDir(d).finished]
    if not done:
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base_path, manager = Path(folder) / BASE_FILE, task_manager(cfg, source)
    if not stored(base_path, cfg):
        first = load_run_config(done[0])
        backbone = load_as_trained(first.model, first.train.precision, log=log)
        log(f"lm_eval: scoring the base model ({first.model.name}) on {', '.join(cfg.tasks)}")
        write_json(base_path, {**score(backbone, cfg, source, manager), "model": first.model.name})
        del backbone
    for run_dir in done:
        path = Path(run_dir) / RUN_FILE
        if stored(path, cfg):
            continue
        _, backbone = load_run(Path(run_dir), log=log)
        log(f"lm_eval: scoring {Path(run_dir).name}")
        write_json(path, score(backbone, cfg, source, manager))
        del backbone
        gc.collect()
