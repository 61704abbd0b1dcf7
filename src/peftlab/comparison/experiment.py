"""An experiment file of `peftlab compare`, typed: what every run of a comparison shares (model, task,
budget, seeds, eval settings) and its list of method entries.

Its own module because both compare.py (which runs the experiment) and compare_checks.py (which checks
it first) read it: kept in either, the two would import each other.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from peftlab.comparison.launch import LauncherConfig
from peftlab.comparison.lr_search import LrSearch
from peftlab.config import MAX_SEED, EvalConfig, ModelConfig
from peftlab.measure.general import GeneralConfig
from peftlab.rundir.runio import PLAIN_NAME, PLAIN_WORDS, inside
from peftlab.training.budget import BY_NAME


def model_folder(name: str) -> str:
    """The sub-folder of one model in a several-model comparison: the last part of its name or path
    ('./models/my-llama' -> 'my-llama', 'org/model' -> 'model'), odd characters as '_'."""
    tail = re.sub(r"[^A-Za-z0-9._+-]+", "_", name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1])
    tail = tail.lstrip("._") or "model"
    return tail[:128]


class CompareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Comparison name: its folder is output_dir/name.")
    output_dir: str = Field("runs", description="Where the comparison folder is written.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    models: list[ModelConfig] | None = Field(
        None,
        description="Several models instead of one: every method runs on each (same task, budget rule, seeds), "
        "each model in its own sub-folder with its own leaderboard, and a cross-model table of each method's "
        "rank per model with Kendall's tau (report/cross_model.py), e.g. [{name: smollm2-135m}, {name: ./my-model}].",
    )
    task: dict[str, Any] = Field(
        description="The task section, as in a run config (e.g. {name: dialogsum, data_dir: ...})."
    )
    budget: dict[str, float] = Field(
        description="One budget for every run: {steps|epochs|examples|tokens|flops|seconds: amount}."
    )
    evals: int = Field(4, ge=1, description="Validations at evenly spaced fractions of the budget (learning curves).")
    seeds: list[StrictInt] = Field([0], min_length=1, description="Seeds; a method that does not train runs once.")
    train: dict[str, Any] = Field(
        default_factory=dict, description="Shared train settings (batch_size, schedule, ...)."
    )
    eval: EvalConfig = Field(default_factory=EvalConfig)
    trackers: list[str] = Field(["tensorboard"], description="tensorboard (default), wandb, mlflow; [] for none.")
    examples: list[StrictInt] = Field([0, 1, 2, 42], description="Test indices shown side by side in the report.")
    forgetting: dict[str, Any] | None = Field(
        None,
        description="Measure forgetting in every run (the LM loss on a text sample after training minus "
        "before; a leaderboard column and a Pareto plot), e.g. "
        "{task: {name: dialogsum, data_dir: ...}, examples: 200}.",
    )
    general: GeneralConfig | None = Field(
        None,
        description="General abilities of every run and the base, scored after training (measure/general.py): "
        "{lm_eval: {tasks: [...], limit: N, include_path: folder of local task YAMLs}}; leaderboard columns "
        "per task and their change from the base.",
    )
    methods: list[dict[str, Any]] = Field(
        min_length=1, description="Methods: {name, label?, <options>, train?, eval?, override?}."
    )
    lr_search: LrSearch = Field(
        default_factory=LrSearch,
        description="Every training method's lr chosen on validation by successive halving (lr_search.py): "
        "{factors: [...], rungs: [...]} (default: its own lr x 1/3, 1, 3; one rung at 1/3 of the budget), or off "
        "(every method at its one lr). A method entry's lr_grid: [...] gives its own values.",
    )
    lr_factors: list[float] | None = Field(None, description="The older name of lr_search.factors (e.g. [0.3, 1, 3]).")
    processes: int = Field(
        1,
        ge=1,
        description="Processes per run (one GPU each, under `accelerate launch`); a step then sees "
        "processes x batch_size examples. The launcher gives each run that many device slots.",
    )
    launcher: LauncherConfig = Field(
        default_factory=LauncherConfig,
        description="Where the runs go: {name: local|slurm|ray, parallel, devices, slurm: {...}, ray: {...}}.",
    )
    calibrated_zero_shot: bool = Field(
        True,
        description="On a classify or multiple_choice task, add to each zero-shot entry (method none) a "
        "'<label>+calibrated' row scored with contextual calibration (task.calibrate).",
    )

    @field_validator("budget")
    @classmethod
    def _one_budget(cls, v: dict[str, float]) -> dict[str, float]:
        if len(v) != 1 or next(iter(v)) not in BY_NAME:
            raise ValueError(f"give exactly one of {', '.join(BY_NAME)}, e.g. {{flops: 2.0e+15}}")
        return v

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # The name becomes the comparison's folder under output_dir: '../x' or '/x' would write elsewhere.
        if not re.fullmatch(PLAIN_NAME, v):
            raise ValueError(f"the comparison's folder is output_dir/name, so name must be {PLAIN_WORDS}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        # numpy seeds are 0..2**32-1 (others fail every run after it starts), and a repeated seed is one
        # run folder trained twice.
        bad = [s for s in v if not 0 <= s <= MAX_SEED]
        twice = sorted({s for s in v if v.count(s) > 1})
        if bad or twice:
            what = f"{bad} out of range" if bad else f"{twice} given twice"
            raise ValueError(f"give distinct integers 0..{MAX_SEED} (numpy's seed range, 2**32-1); {what}")
        return v

    @field_validator("examples")
    @classmethod
    def _examples(cls, v: list[int]) -> list[int]:
        if any(i < 0 for i in v):
            raise ValueError("give test-example indices from 0 (the first test example) up, e.g. [0, 1, 2]")
        return v

    @field_validator("lr_factors")
    @classmethod
    def _positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(f <= 0 for f in v)):
            raise ValueError("give positive factors, e.g. [0.3, 1, 3]")
        return v

    @model_validator(mode="after")
    def _one_or_several_models(self) -> CompareConfig:
        if self.models is None:
            return self
        if "model" in self.model_fields_set:
            raise ValueError("give model (one) or models (several), not both")
        if len(self.models) < 2:
            raise ValueError("models needs two or more entries (one model: use model: {name: ...})")
        folders = [model_folder(m.name) for m in self.models]
        twice = sorted({f for f in folders if folders.count(f) > 1})
        if twice:
            raise ValueError(
                f"each model gets a sub-folder named after it, and {', '.join(twice)} would be shared by two "
                "entries: give each model once"
            )
        return self

    def per_model(self) -> list[CompareConfig]:
        """One single-model comparison per entry of ``models``, in the sub-folder <name>/<model folder>."""
        if self.models is None:
            return [self]
        base = self.model_dump(exclude={"models", "model", "name", "output_dir"}, exclude_unset=True)
        return [
            CompareConfig.model_validate(
                {**base, "model": m.model_dump(), "name": model_folder(m.name), "output_dir": str(self.folder())}
            )
            for m in self.models
        ]

    def detached(self) -> bool:
        """Slurm jobs submitted without waiting: the driver ends before the runs do."""
        return self.launcher.name == "slurm" and not self.launcher.wait and self.launcher.slurm.executor == "slurm"

    def folder(self) -> Path:
        return inside(self.output_dir, Path(self.output_dir) / self.name, f"name {self.name!r}")
