"""summary.json, typed: what a finished run holds (final numbers, cost, versions, hardware).

``RunSummary`` is the file's one definition: train.py builds and writes it, the report (and the
benchmarks) read it back as attributes. The on-disk keys are the field names. Reading is
tolerant of older run folders: every field added after the first release is optional and gets
its default when absent, and unknown keys (from a newer peftlab) are ignored. A missing required
field, or a field of the wrong type, is a PeftlabError naming the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from peftlab.errors import PeftlabError
from peftlab.rundir.diskspace import writing
from peftlab.rundir.folder import SUMMARY
from peftlab.rundir.runio import write_json


def _number(value: object) -> int | float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("number_type", "Input should be a number")


# A JSON number kept as written: an int stays an int (a float field would turn 0 into 0.0).
Number = Annotated[int | float, PlainValidator(_number)]


class _Record(BaseModel):
    # strict: no quiet conversion ("3" is not a number, 1 is not a boolean); unknown keys are ignored.
    model_config = ConfigDict(strict=True, extra="ignore")


class Hardware(_Record):
    platform: str | None = None  # platform.platform()
    processor: str | None = None  # the CPU (or the machine type when the OS does not name it)
    cpu_count: int | None = None
    torch_threads: int | None = None
    memory_bytes: int | None = None  # total RAM
    cuda: str | None = None  # the GPU's name; None on CPU


class LaunchInfo(_Record):
    """Where and beside what the run ran (launch/): the report flags costs measured on mixed hardware
    or by CPU runs that shared the machine."""

    launcher: str = "direct"  # local, slurm, ray; direct: `peftlab train` typed by hand
    host: str | None = None
    device: str | None = None  # the GPU's name, else the CPU's
    slot: str | None = None  # the launcher's device slot(s), e.g. "0,1"
    concurrency: int = 1  # how many runs the launcher ran at once beside it (local: --parallel)
    job_id: str | None = None  # Slurm array task or Ray task


class BudgetLimit(_Record):
    kind: str  # steps, examples, tokens, flops or seconds (budget.KINDS)
    amount: Number
    # What the run spent of it (None: an older run): within half a step of amount (seconds: one step over).
    spent: Number | None = None

    @property
    def used(self) -> float | None:
        """spent / amount: 1.0 is the budget exactly."""
        return self.spent / self.amount if self.spent is not None and self.amount else None


class Forgetting(_Record):
    """forgetting.py's measure: the LM loss per token on a text sample before and after training."""

    task: str
    split: str
    examples: int
    loss_before: Number  # the base model's
    loss_after: Number  # the trained model's, its adapter active
    seconds: Number | None = None  # this run's passes (the base model's is made once per output folder)
    in_domain: bool | None = None  # the sample is the trained task's own (forgetting.in_domain): in-domain learning

    @property
    def delta(self) -> float:
        """after - before: positive = the model predicts general text worse than it did (it forgot)."""
        return self.loss_after - self.loss_before


class Overlap(_Record):
    """tasks/overlap.py: inputs shared between splits when the task was prepared. A count per pair of
    splits ("train_test") is of the second split's examples whose input the first split has."""

    exact: dict[str, int]
    normalised: dict[str, int]  # case, whitespace and punctuation normalised (includes the exact ones)
    dropped_from_train: int  # training examples dropped (0 with dedupe: off)
    dedupe: str  # task.dedupe: train (dropped) or off (kept)


class InferencePoint(_Record):
    """inference_cost.py at one batch size: medians over ``samples`` timed generations."""

    prefill_ms_per_prompt: Number | None = None  # the prompt's forward, per prompt (batch time / batch)
    prefill_ms_per_prompt_token: Number | None = None  # the same per real prompt token
    decode_ms_per_token: Number | None = None  # one generated token of one sequence (step time / batch)
    samples: int | None = None  # timed generations the medians are over
    peak_memory_bytes: int | None = None
    # Older summaries only: wall time of prefill and decode together / tokens generated up to EOS
    # (a method that stopped early was charged its prompt over fewer tokens); not shown by the report.
    ms_per_token: Number | None = None


class InferenceCost(_Record):
    """inference_cost.py: per batch size ("batch_1", "batch_16"), unmerged and (mergeable methods) merged."""

    new_tokens: int | None = None  # every sequence decoded exactly this many tokens, EOS ignored
    max_new_tokens: int | None = None  # older summaries: the cap generation stopped at (or at EOS)
    unmerged: dict[str, InferencePoint]
    merged: dict[str, InferencePoint] | None = None
    seconds: Number | None = None  # the whole measurement (every batch size, merging included)

    @property
    def prefill_apart(self) -> bool:
        """Whether prefill and decode were timed apart (False: an older summary's mixed ms/token)."""
        return self.new_tokens is not None

    def deployed(self, batch: int = 1) -> InferencePoint | None:
        """The point as one would serve the method: merged where it merges."""
        return (self.merged or self.unmerged).get(f"batch_{batch}")


class RunSummary(_Record):
    """One finished run. Required: what places it on a leaderboard (run, method, task,
    primary_metric, test); everything else is optional, absent in some older runs."""

    # what ran
    run: str  # the run's name (its folder's name)
    method: str  # the method's registry name, e.g. lora
    trains: bool | None = None  # whether the method trains (None: older run, see report/runs.py)
    label: str | None = None  # the method's name within a comparison, e.g. lora-r4
    task: str
    model: str | None = None  # the config's model name
    seed: int | None = None
    compute_dtype: str | None = None  # what the matmuls ran in (train.precision resolved): bfloat16, float32
    # scores
    primary_metric: str
    higher_is_better: bool = True
    test: dict[str, Number]  # every test metric (and "seconds" of scoring), scored once at the end
    test_examples: int | None = None
    test_ids_sha256: str | None = None  # of the scored test ids, in order: runs ranked together must agree
    best_validation: dict[str, Number] | None = None  # every validation metric at best_step
    best_step: int | None = None  # the step whose weights were kept (chosen on validation)
    # budget and work done
    budget: BudgetLimit | None = None  # None: the run stopped on epochs or did not train
    steps: int | None = None  # optimizer steps
    processes: int | None = None  # data-parallel processes
    launch: LaunchInfo | None = None  # launcher, host, device, slot, concurrency, job id
    flops: Number | None = None  # analytical training FLOPs
    flops_per_step: Number | None = None
    examples_seen: int | None = None
    tokens_seen: int | None = None  # real (non-padding) tokens
    lr: Number | None = None  # None for a method that does not train
    # cost
    trainable_params: int | None = None
    total_params: int | None = None
    trainable_pct: Number | None = None
    adapter_bytes: int | None = None
    train_seconds: Number | None = None  # optimizer steps only (no evaluation, no logging)
    eval_seconds: Number | None = None  # every validation pass and the test (generation and scoring)
    wall_seconds: Number | None = None  # the whole run, process start to summary, over every resume
    train_examples_per_s: Number | None = None
    train_tokens_per_s: Number | None = None
    peak_memory_bytes: int | None = None  # optimizer steps only (the leaderboard's column); zero-shot: the loaded model
    run_peak_memory_bytes: int | None = None  # the whole run: evaluation, checkpoints, restoring the best weights too
    peak_memory_kind: str | None = None  # cpu_peak_rss or cuda_max_allocated (cost.PeakMemory)
    # Frozen parameters held in bf16 (2 bytes each, not fp32's 4), which lowers both peaks: the frozen
    # linear layers stored once under bf16 compute (precision.store_frozen_linears) or a model loaded in
    # bf16 (model.dtype). 0: every frozen weight in fp32; None: an older run, not recorded.
    frozen_bf16_params: int | None = None
    forgetting: Forgetting | None = None  # None: not measured (the config's forgetting: is null)
    inference: InferenceCost | None = None  # None: not measured (eval.inference_cost is false)
    truncated_inputs: int | None = None  # inputs cut to max_source_tokens
    skipped_long_train_examples: int | None = None
    overlap: Overlap | None = None  # None: an older run, whose splits were not checked
    deviations: list[str] | None = None  # where the method departs from its paper (Method.deviations)
    finished_at: str | None = None  # local time, ISO 8601 with offset
    # environment (runio.environment)
    python: str | None = None
    versions: dict[str, str | None] | None = None  # package -> release (None: not installed)
    untested_versions: dict[str, str] | None = None  # package -> tested release, where they differed
    hardware: Hardware | None = None

    @property
    def forgetting_delta(self) -> float | None:
        """The leaderboard's forgetting column: LM loss after - before (None when not measured)."""
        return self.forgetting.delta if self.forgetting else None

    @property
    def forgetting_in_domain(self) -> bool:
        """Whether the forgetting column measures the trained task's own texts (named 'in-domain loss change')."""
        return bool(self.forgetting and self.forgetting.in_domain)

    @property
    def ms_per_token(self) -> float | None:
        """The leaderboard's latency column: decode ms per generated token at batch 1, as deployed
        (merged where the method merges); None for older runs, whose figure mixed prefill in."""
        point = self.inference.deployed(1) if self.inference and self.inference.prefill_apart else None
        return point.decode_ms_per_token if point else None

    @property
    def prefill_ms_per_prompt(self) -> float | None:
        """The leaderboard's prefill column: ms to process one prompt at batch 1, as deployed."""
        point = self.inference.deployed(1) if self.inference and self.inference.prefill_apart else None
        return point.prefill_ms_per_prompt if point else None

    @property
    def budget_used(self) -> float | None:
        """The share of its budget the run spent (budget.spent / budget.amount); None when unknown."""
        return self.budget.used if self.budget else None

    def to_json(self) -> dict:
        """summary.json's object: every field, under its own name, in the order above."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: object, source: str | Path = SUMMARY) -> RunSummary:
        """The summary in ``data`` (summary.json's parsed object); PeftlabError naming ``source``
        and every missing or ill-typed field."""
        if not isinstance(data, dict):
            raise PeftlabError(f"{source}: expected a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise PeftlabError(_describe(e, source)) from None

    def write(self, path: Path) -> None:
        """Write summary.json atomically (a crash never leaves half a file); a full disk names it."""
        with writing(Path(path)):
            write_json(Path(path), self.to_json())

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        path = Path(path)
        if not path.is_file():
            raise PeftlabError(f"{path}: no such file (the run did not finish)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PeftlabError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(data, path)


def _describe(err: ValidationError, source: str | Path) -> str:
    """One message: the missing fields first (as one list), then each ill-typed field and its value."""
    missing, wrong = [], []
    for e in err.errors():
        name = ".".join(str(p) for p in e["loc"])
        if e["type"] == "missing":
            missing.append(name)
        else:
            msg = e["msg"][:1].lower() + e["msg"][1:]
            wrong.append(f"field '{name}': {msg} (got {_short(e.get('input'))})")
    parts = ([f"missing field(s) {', '.join(missing)}"] if missing else []) + wrong
    return f"{source}: " + "; ".join(parts)


def _short(value: object, limit: int = 60) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
