"""The ``task`` section of a run config: which task, its data, prompt fields, splits and limits.

Apart from config.py (which holds the other sections and loading) because it is the longest
section and the one users' own data touches; config.py imports it, so ``peftlab.config.TaskConfig``
stays where callers find it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from peftlab.errors import suggest
from peftlab.tasks.metrics import REGISTRY as METRIC_REGISTRY


def registered_metric(name: str) -> str:
    """``name`` when a metric of that name is registered (peftlab.tasks.metrics) now, when the config is
    validated: a metric registered after import is accepted, which a Literal of the names at import was not."""
    if name not in METRIC_REGISTRY:
        allowed = list(METRIC_REGISTRY)
        # A custom error: its message is shown as it is, after the field's location (task.metric: ...).
        raise PydanticCustomError(
            "unknown_metric",
            "unknown metric {name}{hint}; allowed: {allowed}",
            {"name": repr(name), "hint": suggest(name, allowed), "allowed": ", ".join(allowed)},
        )
    return name


# The metrics a task may name: those registered in peftlab.tasks.metrics when the config is validated.
Metric = Annotated[str, AfterValidator(registered_metric)]


class Strict(BaseModel):
    """Every config section: unknown keys are errors, assignments are validated, and numbers are finite
    (YAML's .inf and .nan pass a bound such as lr > 0 and then fail, or never stop, in training)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TaskConfig(Strict):
    name: str = Field(
        "sql_demo",
        description="Task name. A packaged task (`peftlab tasks` lists them: dialogsum, sst2, geoquery, ...) "
        "fills every other field; keys given here override it. 'sql_demo' is built in and needs no data.",
    )
    description: str | None = Field(None, description="One line on what the task is (shown by `peftlab tasks`).")
    data_dir: str | None = Field(
        None,
        description="Local folder with the task's files (named by local_files) and database, e.g. "
        "../shared/data/dialogsum. Takes precedence over hub.",
    )
    local_files: dict[str, str] | None = Field(
        None,
        description="File name per split inside data_dir, e.g. {train: train.jsonl} (packaged tasks set these).",
    )
    data_files: dict[str, str] | None = Field(
        None,
        description="Local file path per split, e.g. {train: data/train.jsonl}. JSONL, CSV or Parquet. "
        "Takes precedence over data_dir and hub.",
    )
    hub: str | None = Field(None, description="Hugging Face dataset id (needs the hub), e.g. knkarthick/dialogsum.")
    hub_config: str | None = Field(None, description="Dataset configuration name on the hub.")
    hub_splits: dict[str, str] | None = Field(
        None,
        description="Hub split (or slice) per split, e.g. {validation: 'train[-500:]', test: validation} "
        "where the hub's test split has no labels.",
    )
    reader: Literal["rows", "geoquery", "wikisql", "race_distractors"] = Field(
        "rows",
        description="How raw rows become examples: 'rows' (one row = one example) or a dataset-specific "
        "reader (GeoQuery's grouped questions, WikiSQL's structured queries, RACE distractors).",
    )
    reader_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the reader, e.g. {split_by: query} for geoquery."
    )
    format: Literal["fields", "messages", "alpaca", "sharegpt"] = Field(
        "fields",
        description="What a record is. 'fields': named fields, prompted through input_template and target_field. "
        "Chat and instruction data: 'messages' ({messages: [{role, content}]}, roles system/user/assistant), "
        "'alpaca' ({instruction, input, output}), 'sharegpt' ({conversations: [{from, value}]}, from "
        "system/human/gpt or user/assistant). The prompt is the conversation up to its final assistant turn, "
        "through the model's chat template; the target is that turn. Loss falls on the final assistant turn "
        "only: earlier assistant turns are context.",
    )
    messages_field: str | None = Field(
        None,
        description="format messages / sharegpt: the field holding the turns (default: messages / conversations).",
    )
    bad_records: Literal["error", "drop"] = Field(
        "error",
        description="format messages / alpaca / sharegpt: a malformed record (unknown role, no final assistant "
        "turn, ...) is an error naming its file and line ('error'), or is dropped and counted in the log ('drop').",
    )
    validation_size: int = Field(
        500,
        ge=1,
        description="Examples held out of train (seeded) as validation when the data has no validation "
        "split: checkpoints are chosen on validation, never on test.",
    )
    hold_out_by: Literal["auto", "text", "database"] = Field(
        "auto",
        description="How validation held out of train is kept as disjoint from train as the test is. Always: it "
        "is drawn from training rows whose input lies inside no longer training input (whole sentences, not "
        "their phrases), and training rows whose input contains, or lies inside, a held-out input (word for "
        "word, ignoring case) are dropped and counted. 'database' also holds out whole databases "
        "(cross-database text-to-SQL such as Spider, whose test databases are unseen in training); it needs "
        "task.database to name a row field. 'auto': 'database' when task.database names a row field and the "
        "test split shares no database with train, else 'text'.",
    )
    dedupe: Literal["train", "off"] = Field(
        "train",
        description="Inputs shared between train, validation and test (exact, and once case, whitespace and "
        "punctuation are normalised) are counted when the task is prepared: the log, summary.json's overlap "
        "and the report show them. 'train': every training example whose input is also a validation or test "
        "input is dropped (validation and test stay as they are; an error if train would be left empty); "
        "'off': they are kept, and the report says the splits overlap. Validation-test overlap is only counted.",
    )
    input_template: str | None = Field(
        None,
        description="Python format string over the example's fields, e.g. 'Summarize:\\n{dialogue}'. "
        "Text-to-SQL tasks may use {schema} (the database's CREATE TABLE statements).",
    )
    target_field: str | None = Field(None, description="Field holding the training target.")
    reference_fields: list[str] | None = Field(
        None,
        description="Fields holding references for scoring (several = multi-reference max); "
        "defaults to [target_field]. Used where the example has them (e.g. DialogSum test).",
    )
    id_field: str | list[str] | None = Field(
        None,
        min_length=1,
        description="Field holding a unique example id, or a list of names tried in turn (the first column the "
        "file has is used: DialogSum names it fname, its hub copies id). A named field the file lacks is an "
        "error; null numbers the rows.",
    )
    merge_duplicate_ids: bool = Field(
        False,
        description="Rows that are the same example (see merge_by) are one example whose references are all "
        "their targets (e.g. the hub's DialogSum test: one row per reference summary).",
    )
    merge_by: Literal["id", "input"] = Field(
        "id",
        description="With merge_duplicate_ids, what makes rows the same example: the same id, or the same "
        "prompt (rows the model cannot tell apart; for copies that give each reference row its own id, e.g. "
        "the hub's DialogSum test: test_0_1, test_0_2, test_0_3).",
    )
    metric: Metric = Field(
        "rouge", description="Task metric, the first is the primary (accuracy also reports macro-F1)."
    )
    extra_metrics: list[Metric] = Field(default_factory=list, description="More metrics to report, e.g. [rouge].")
    higher_is_better: bool = Field(True, description="Direction of the primary metric.")
    database: str | None = Field(
        None,
        description="SQLite file for execution_accuracy (relative to data_dir); may name a field, "
        "e.g. 'database/{db_id}/{db_id}.sqlite' (Spider: one database per example).",
    )
    output_type: Literal["generate", "classify", "multiple_choice"] = Field(
        "generate",
        description="generate: free generation, scored by the metric; classify: the label word with the highest "
        "log-likelihood (always a valid label); multiple_choice: the option with the highest length-normalised "
        "log-likelihood.",
    )
    label_words: list[str] | dict[str | int, str] | None = Field(
        None,
        description="classify: the label words, or a map from the target field's values to words "
        "(e.g. {0: negative, 1: positive}).",
    )
    choices_field: str | None = Field(
        None,
        description="multiple_choice: field with the options, a list of texts or {label: [...], text: [...]}; "
        "the target field holds the answer's label, letter, index or text. The template may use {options}.",
    )
    calibrate: bool = Field(
        False,
        description="classify / multiple_choice: contextual calibration (Zhao et al. 2021): each answer's "
        "probability divided by its probability after content-free inputs ('N/A', '', '[MASK]' in every "
        "template field). `peftlab compare` adds a calibrated zero-shot row where it applies.",
    )
    shots: int = Field(
        0, ge=0, le=64, description="k-shot: k demonstrations drawn from train (with shots_seed) before every prompt."
    )
    shots_seed: int = Field(0, description="Seed of the demonstration draw (the same k for every example).")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="Generation cap; stops runaway generations.")
    max_source_tokens: int = Field(
        512, ge=8, description="Longer inputs lose their middle (instructions at both ends survive); counted."
    )
    max_target_tokens: int = Field(128, ge=1, description="Training targets longer than this are truncated.")
    too_long: Literal["truncate", "skip"] = Field(
        "truncate",
        description="Training inputs over max_source_tokens: truncate them (their middle) or skip them; "
        "counted in summary.json. Scored splits are always truncated, never skipped, so every method sees them all.",
    )
