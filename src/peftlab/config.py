"""Typed experiment configs (pydantic v2).

A run is described by one YAML file with five sections: model, method, task, train, eval.
Every field has a default and a description; unknown keys are errors, and validation errors are
rewritten to name the field (e.g. ``train.lr``) and what is allowed.

The ``method`` section is open here (``name`` + options) and validated by the method's own config
class from the registry, so adding a method never touches this file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peftlab.errors import PeftlabError, suggest
from peftlab.rundir.runio import inside
from peftlab.task_config import Strict as _Strict
from peftlab.task_config import TaskConfig
from peftlab.tasks.catalog import resolve_task
from peftlab.training.budget import BUDGET_KINDS

DEFAULT_KV_CACHE_GB = 2.0  # eval.kv_cache_gb's default, and log-likelihood scoring's outside a run

MAX_SEED = 2**32 - 1  # numpy.random.seed's range: a seed outside it passes `check`, then fails every run


class ModelConfig(_Strict):
    name: str = Field(
        "smollm2-135m",
        description="Bundled model ('smollm2-135m'), tiny test model ('tiny-t5', 'tiny-gpt-neo', "
        "'tiny-llama'), a Hugging Face hub id, or a local directory.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="'auto' = float32 on CPU (bf16 is ~50x slower there), bfloat16 on GPU."
    )
    trust_remote_code: bool = Field(
        False,
        description="Run the Python shipped with the model (its folder's or hub repo's .py files). Needs "
        "--trust-remote-code on the command line too: the key alone is refused. Off unless you trust the code.",
    )
    chat_template: bool = Field(True, description="Format prompts with the tokenizer's chat template when it has one.")


# Method options whose default changed: option -> (old default, new default), and the methods that have
# them. A run's config.yaml records the new default even when the config left the option out, so that a
# config.yaml written before the change (the key absent) reads as the old default (same_config), not as
# the new one. fast_dropout, fused_dropout and fused_add: off until 2026-12-07 (bench/RESULTS.md: the same
# quality, faster steps, less memory).
CHANGED_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "fast_dropout": (False, True),
    "fused_dropout": (False, True),
    "fused_add": (False, True),
}
CHANGED_FOR = frozenset({"lora", "qlora"})
OLD, NEW = 0, 1


def _with_defaults(entry: dict[str, Any], which: int) -> None:
    """The OLD or NEW changed defaults for the method ``entry`` names, and for each component of a
    hybrid, where absent."""
    if entry.get("name") in CHANGED_FOR:
        for key, defaults in CHANGED_DEFAULTS.items():
            entry.setdefault(key, defaults[which])
    if entry.get("name") == "hybrid" and isinstance(entry.get("methods"), list):
        for component in entry["methods"]:
            if isinstance(component, dict):
                _with_defaults(component, which)


class MethodConfig(BaseModel):
    """``name`` picks the method; the other keys are that method's options (see ``peftlab methods``)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field("lora", description="Fine-tuning method: see `peftlab methods`.")

    @model_validator(mode="after")
    def _record_changed_defaults(self) -> MethodConfig:
        extra = self.__pydantic_extra__ if self.__pydantic_extra__ is not None else {}
        entry = {"name": self.name, **extra}
        _with_defaults(entry, NEW)
        entry.pop("name")
        self.__pydantic_extra__ = entry
        return self

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainConfig(_Strict):
    lr: float | None = Field(None, gt=0, description="Peak learning rate; default: the method's own.")
    batch_size: int = Field(
        8,
        ge=1,
        description="Examples per optimizer step and process (before accumulation); "
        "under `accelerate launch --num_processes N` a step sees N x batch_size x grad_accum.",
    )
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    # The budget: exactly one of these. Non-step budgets let methods with different costs per step
    # be compared at equal cost (see peftlab.training.budget). A run stops at the optimizer-step boundary
    # nearest its budget (at most half a step over or under; seconds: up to one step over).
    max_steps: int | None = Field(None, ge=1, description="Budget in optimizer steps.")
    epochs: float | None = Field(None, gt=0, description="Budget in epochs (converted to steps).")
    max_examples: int | None = Field(
        None, ge=1, description="Budget in training examples seen (stops at the step boundary nearest it)."
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        description="Budget in training tokens (prompt + target, unpadded; on encoder-decoders the "
        "encoder's prompt tokens plus the decoder's target tokens); stops at the step boundary nearest it.",
    )
    max_flops: float | None = Field(
        None,
        gt=0,
        description="Budget in training FLOPs (analytical count, peftlab.measure.flops; gradient checkpointing's "
        "recomputation included); stops at the step boundary nearest it.",
    )
    max_seconds: float | None = Field(
        None,
        gt=0,
        description="Budget in seconds of optimizer steps (not evaluation); a step's seconds are not known "
        "before it runs, so the last step may end up to one step past it.",
    )
    evals: int | None = Field(
        None,
        ge=1,
        description="Validate at N evenly spaced points of the budget (the last at its end): learning "
        "curves at the same budget fractions for every method.",
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Fraction of steps of linear warmup.")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="LR decay after warmup.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Compute dtype of training forwards, generation and scoring, the same for every method "
        "(weights stay fp32): 'auto' = bf16 on GPU and on CPUs with native bf16 (AVX512-BF16, AMX; "
        "PEFTLAB_CPU_BF16=0/1 overrides the detection), else fp32.",
    )
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null disables.")
    eval_every: int | None = Field(None, ge=1, description="Validate every N steps (and at the end); null = end only.")
    max_train_examples: int | None = Field(None, ge=1, description="Use only the first N training examples.")
    log_every: int = Field(1, ge=1, description="Write a metrics.jsonl line every N steps.")
    group_by_length: bool = Field(
        True,
        description="Batch examples of similar length together (within windows of 50 batches, in random "
        "order): less padding, same examples per epoch.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: much less memory, about a third more compute. "
        "Counted in the run's FLOPs (and a FLOP budget) as one more forward of every transformer block "
        "(all but the output head and embeddings): an estimate on the high side, as torch may skip a "
        "block's last matmul.",
    )
    release_memory: bool = Field(
        False,
        description="CPU: hand freed activations back to the system at once (glibc malloc's mmap threshold held "
        "at 1 MiB, cpu_allocator.py): the peak memory is then the live tensors, not the allocator's leftovers "
        "too (SmolLM2-135M LoRA in fp32: 0.55x the peak), for about 40% slower steps (the pages are mapped "
        "afresh each time; bench/RESULTS.md). The same losses and predictions to the bit. No effect on GPU "
        "or without glibc.",
    )
    checkpoint: bool = Field(
        True,
        description="Save a resumable checkpoint at every validation, every checkpoint_every steps and on "
        "SIGTERM/SIGINT: an interrupted run continues from it (peftlab train --resume RUN_DIR).",
    )
    checkpoint_every: int | None = Field(
        None, ge=1, description="Also checkpoint every N steps (null: validations only)."
    )
    stop_at: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Stop at the first step boundary at or past this fraction of the budget, keeping the "
        "checkpoint and writing no summary (the run is not finished): a rung of compare's learning-rate search "
        "(successive halving; rung.py). The schedule stays the whole budget's. The validation there is recorded "
        "in rungs.jsonl; `--resume` with a later stop_at, or none, continues the run. A resume ignores it when "
        "it compares configs.",
    )

    def budget(self) -> tuple[str, float] | None:
        """(kind, amount) of the budget; epochs are converted to steps by the training loop."""
        for kind in BUDGET_KINDS:
            value = getattr(self, kind.config_key)
            if value is not None:
                return kind.name, value
        return None


class EvalConfig(_Strict):
    batch_size: int = Field(
        64,
        ge=1,
        description="Generation: at most this many prompts decode together (length-sorted; each batch is "
        "prefilled in groups of similar length, models/prefill_groups.py). More rows per decode step is faster on "
        "CPU and GPU alike; the same tokens at any batch size. Log-likelihood scoring: at most this many prompts "
        "per batch, each with all its options on its KV cache (tasks/loglik.py); where a prompt cannot be "
        "shared, this many (prompt, option) pairs.",
    )
    kv_cache_gb: float | None = Field(
        DEFAULT_KV_CACHE_GB,
        gt=0,
        description="Generation and log-likelihood scoring: fewer than batch_size prompts where their KV cache "
        "(estimated from the model's config, fp32; in scoring, repeated for each option) would pass this many GB "
        "(models/kv_budget.py); null = no cap.",
    )
    max_validation: int | None = Field(64, ge=1, description="Validate on the first N examples (null = all).")
    max_test: int | None = Field(None, ge=1, description="Test on the first N examples (null = all).")
    num_beams: int = Field(1, ge=1, le=64, description="Beam search width, 1..64; 1 = greedy decoding.")
    share_prefix: bool = Field(
        True,
        description="Decoder-only models: prefill the prompt prefix every example of a batch shares (chat "
        "template, instruction) once per batch, not once per row (models/shared_prefix.py). The same tokens "
        "in exact arithmetic; false computes every row whole. Log-likelihood scoring always shares it, as it "
        "shares each prompt's cache among its options (its scores equal one row per pair within rounding).",
    )
    validate_untrained: bool = Field(
        True,
        description="Score the validation split before the first step too, so learning curves start at "
        "the untrained model (0 FLOPs). Only for the curve: the kept weights are the best trained ones.",
    )
    inference_cost: bool = Field(
        False,
        description="After the test, with the optimizer freed: time prefill (ms per prompt) and decode (ms per "
        "generated token, exactly 32 per sequence, EOS ignored) and the peak memory at batch 1 and 16, unmerged "
        "and, where the method merges, merged in place: summary.json's inference, the leaderboard's decode "
        "ms/token and prefill ms/prompt columns.",
    )


class ForgettingConfig(_Strict):
    """forgetting.py: the language-modelling loss on a text sample, after training minus before."""

    task: TaskConfig = Field(
        description="The task whose examples are the text sample (each its prompt and target), e.g. "
        "{name: dialogsum, data_dir: data/dialogsum}; a packaged task's name alone also works."
    )
    split: Literal["train", "validation", "test"] = Field("test", description="The split the texts come from.")
    examples: int = Field(200, ge=1, description="How many texts (the split's first N).")
    max_tokens: int = Field(256, ge=2, description="Each text is cut to this many tokens.")
    in_domain: bool = Field(
        False,
        description="The sample may come from the trained task itself (same name and data): the loss change "
        "then measures in-domain learning, not forgetting, and the leaderboard names the column 'in-domain "
        "loss change'. Without it, a sample from the trained task is refused.",
    )

    @field_validator("task", mode="before")
    @classmethod
    def _task_by_name(cls, v):
        return {"name": v} if isinstance(v, str) else v


class ExperimentConfig(_Strict):
    name: str | None = Field(None, description="Run folder name under output_dir (default: TASK-METHOD).")
    label: str | None = Field(
        None, description="The method's label in a comparison, e.g. 'lora-r4' (default: method name)."
    )
    trackers: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list,
        description="Experiment trackers (through accelerate) besides metrics.jsonl; "
        "WANDB_MODE=disabled|offline is respected.",
    )
    output_dir: str = Field("runs", description="Where run folders are written.")
    override: str | None = Field(
        None,
        description="In a comparison: why this run's budget or scoring settings differ from the other "
        "methods' (written by `peftlab compare` from a method entry's `override:`; the report marks the row).",
    )
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seed for data order and initialisation: 0..4294967295 (2**32-1, the seeds numpy accepts).",
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    forgetting: ForgettingConfig | None = Field(
        None,
        description="Measure forgetting: the LM loss on a text sample after training minus before "
        "(null = not measured). E.g. {task: {name: dialogsum, data_dir: data/dialogsum}, examples: 200}.",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        # A run name becomes a folder: keep it inside output_dir.
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", v):
            raise ValueError("use letters, digits and . _ + - only (no slashes), at most 128 characters")
        return v

    def run_name(self) -> str:
        return self.name or f"{self.task.name}-{self.method.name}"

    def run_dir(self) -> Path:
        # Unnamed, the folder is named after task.name, which may be any text: it must stay inside output_dir.
        what = "name" if self.name else f"name (unset, so task.name-method.name: {self.run_name()!r})"
        return inside(self.output_dir, Path(self.output_dir) / self.run_name(), what)


def _format_validation_error(err: ValidationError, source: str, root: type[BaseModel] | None = None) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            parent = _model_at(root or ExperimentConfig, e["loc"][:-1])
            allowed = list(parent.model_fields) if parent else []
            lines.append(f"  {loc}: unknown key{suggest(e['loc'][-1], allowed)}; allowed: {', '.join(allowed)}")
        else:
            lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def set_dotted(data: dict, key: str, value: Any) -> None:
    """Apply one ``--set a.b.c=value`` override to a nested dict."""
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        if not isinstance(node.get(p, {}), dict):
            raise PeftlabError(f"--set {key}: '{p}' is not a section")
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        if "=" not in item:
            raise PeftlabError(f"--set {item!r}: expected key=value, e.g. --set train.lr=1e-4")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, base: dict | None = None
) -> ExperimentConfig:
    """Read a YAML config, apply ``key=value`` overrides, validate. Errors name file and field."""
    data: dict = dict(base or {})
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise PeftlabError(f"config file {'is a folder, not a file' if p.is_dir() else 'not found'}: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise PeftlabError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise PeftlabError(f"{p}:{where} invalid YAML: {getattr(e, 'problem', e)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise PeftlabError(f"{p}: the top level must be a mapping of sections (model, method, task, train, eval)")
        data.update(loaded)
    for key, value in parse_overrides(overrides or []):
        set_dotted(data, key, value)
    data["task"] = resolve_task(data.get("task"), source)
    forgetting = data.get("forgetting")
    if isinstance(forgetting, dict) and forgetting.get("task") is not None:  # a packaged task, by name
        task = forgetting["task"]
        forgetting["task"] = resolve_task({"name": task} if isinstance(task, str) else task, f"{source}: forgetting")
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise PeftlabError(_format_validation_error(e, source)) from None
    check_forgetting_task(cfg.task, cfg.forgetting, source)
    # Validate the method's own options now, so a typo fails before the model loads.
    from peftlab.methods import get_method, method_options  # local: pulls in torch and peft; config loads without them

    method_options(cfg.method)
    import importlib.util

    for tracker in cfg.trackers:  # fail now, not after the model has loaded
        if importlib.util.find_spec(tracker) is None:
            raise PeftlabError(
                f"{source}: trackers: '{tracker}' needs the {tracker} package "
                f"(pip install {tracker}); tensorboard is installed with peftlab"
            )
    budgets = [k.config_key for k in BUDGET_KINDS if getattr(cfg.train, k.config_key) is not None]
    if get_method(cfg.method.name).trains and not budgets:
        keys = [k.config_key for k in BUDGET_KINDS]
        raise PeftlabError(f"{source}: a training budget is required: train.{', '.join(keys[:-1])} or {keys[-1]}")
    if len(budgets) > 1:
        raise PeftlabError(f"{source}: give one training budget, not {' and '.join('train.' + b for b in budgets)}")
    return cfg


def task_source(task: TaskConfig) -> tuple:
    """Where a task's examples come from, in the order tasks/base.py reads them: data_files, else data_dir
    and local_files, else the hub; () for a built-in task."""
    if task.data_files is not None:
        return ("files", sorted((s, str(Path(p).resolve())) for s, p in task.data_files.items()))
    if task.data_dir is not None:
        return ("dir", str(Path(task.data_dir).resolve()), sorted((task.local_files or {}).items()))
    if task.hub is not None:
        return ("hub", task.hub, task.hub_config, sorted((task.hub_splits or {}).items()))
    return ()


def check_forgetting_task(task: TaskConfig, forgetting: ForgettingConfig | None, source: str) -> None:
    """Forgetting is measured on another task than the one trained: on its own texts the loss change is
    in-domain learning. Refused unless the section says in_domain: true."""
    if forgetting is None or forgetting.in_domain:
        return
    if forgetting.task.name == task.name and task_source(forgetting.task) == task_source(task):
        raise PeftlabError(
            f"{source}: forgetting.task is the trained task ('{task.name}', the same data): the loss change on "
            "its own texts measures in-domain learning, not forgetting. Choose another task for forgetting.task, "
            "or set forgetting.in_domain: true to measure it on purpose (the leaderboard then names the column "
            "'in-domain loss change')"
        )


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def run_identity(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config without what does not change a run's results: train.stop_at (where a run stops is not
    what it is: a run stopped at a rung of the lr search continues as the same run) and how many prompts
    generate at once (eval.batch_size, eval.kv_cache_gb: the same tokens at any batch size,
    tests/models/test_decode.py), so a finished run stays finished when only those change."""
    default = EvalConfig()
    speed = {"batch_size": default.batch_size, "kv_cache_gb": default.kv_cache_gb}
    return cfg.model_copy(
        update={
            "train": cfg.train.model_copy(update={"stop_at": None}),
            "eval": cfg.eval.model_copy(update=speed),
        }
    )


def same_config(cfg: ExperimentConfig) -> Callable[[str], bool]:
    """Whether a run folder's config.yaml describes ``cfg``: its exact text, or -- written by an older
    peftlab, before keys were added -- the same config once the new keys take their defaults (a new
    key's default keeps the old behaviour, so a finished run stays finished and a checkpoint resumes)."""
    current = dump_config(run_identity(cfg))
    fields = yaml.safe_load(current)

    def matches(saved: str) -> bool:
        if saved == current:
            return True
        try:
            old = yaml.safe_load(saved)
            if isinstance(old, dict) and isinstance(old.get("task"), dict):
                old["task"].setdefault("dedupe", "off")  # written before task.dedupe: train was not decontaminated
            if isinstance(old, dict) and isinstance(old.get("method"), dict):
                _with_defaults(old["method"], OLD)  # written before those defaults changed
            # as mappings: a default filled in here may stand elsewhere in the text than the same key written
            return yaml.safe_load(dump_config(run_identity(ExperimentConfig.model_validate(old)))) == fields
        except (ValidationError, PeftlabError, yaml.YAMLError, TypeError, ValueError):
            return False  # not a config this peftlab reads: not the same run

    return matches
