"""Read a split from JSONL, CSV or Parquet (local), a folder written by ``datasets``' ``save_to_disk``,
or a Hugging Face hub dataset.

Errors name the file and, for JSONL, the line, so a bad row is found in seconds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from peftlab.errors import PeftlabError

FORMATS = (".jsonl", ".json", ".csv", ".parquet")


class Row(dict):
    """A row of a JSONL or CSV file that remembers where it is, so that an error found after the rows were
    reordered (validation held out of train) still names the line: ``where`` is 'path:line'."""

    where: str

    def __init__(self, values: dict, path: Path, line: int):
        super().__init__(values)
        self.where = f"{path}:{line}"


def where(row: dict, fallback: str) -> str:
    """'file:line' of a row read from JSONL or CSV, else ``fallback`` (e.g. 'file row 3' for Parquet)."""
    return getattr(row, "where", None) or fallback


def saved_dataset(folder: Path) -> str | None:
    """'dict' for a DatasetDict saved with ``save_to_disk`` (one subfolder per split), 'dataset' for one
    saved Dataset (one split), None for any other folder. Read from the files ``save_to_disk`` writes."""
    if (folder / "dataset_dict.json").is_file():
        return "dict"
    if (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file():
        return "dataset"
    return None


def read_saved_splits(folder: Path) -> dict[str, list[dict]]:
    """Every split of a DatasetDict saved with ``save_to_disk``, as rows (Arrow files: no code runs)."""
    return {name: split.to_list() for name, split in _load_saved(folder).items()}


def _load_saved(folder: Path):
    """The Dataset or DatasetDict ``save_to_disk`` wrote in ``folder``."""
    try:
        from datasets import load_from_disk

        return load_from_disk(str(folder))
    except Exception as e:  # a damaged or partial folder: name it and keep datasets' reason
        raise PeftlabError(f"{folder}: cannot read the saved dataset ({type(e).__name__}: {e})") from None


def read_rows(path: str | Path) -> list[dict]:
    p = Path(path)
    if p.is_dir() and saved_dataset(p) == "dataset":
        return _load_saved(p).to_list()
    if p.is_dir() and saved_dataset(p) == "dict":
        raise PeftlabError(
            f"{p}: a DatasetDict saved with save_to_disk holds several splits; give it as task.data_dir "
            "(its splits are read by name, or named per split in task.local_files)"
        )
    if not p.is_file():
        raise PeftlabError(f"data file is a folder, not a file: {p}" if p.is_dir() else f"data file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            return _read_jsonl(p)
        if suffix == ".csv":
            with p.open(encoding="utf-8", newline="") as f:
                return _read_csv(p, f)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(p).to_pylist()
    except UnicodeDecodeError as e:
        raise PeftlabError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except PeftlabError:
        raise
    except Exception as e:  # pyarrow / csv errors: keep the message, name the file
        raise PeftlabError(f"{p}: cannot read as {suffix[1:]}: {e}") from None
    raise PeftlabError(f"{p}: unsupported file type '{suffix}'; use one of {', '.join(FORMATS)}")


def _read_jsonl(p: Path) -> list[dict]:
    rows = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise PeftlabError(f"{p}:{n}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise PeftlabError(f"{p}:{n}: each line must be a JSON object, got {type(row).__name__}")
            rows.append(Row(row, p, n))
    return rows


def _read_csv(p: Path, f) -> list[dict]:
    reader = csv.DictReader(f)
    rows, start = [], 2  # line 1 is the header; a quoted field may span lines, so each row says where it began
    for r in reader:
        rows.append(Row(r, p, start))
        start = reader.line_num + 1
    return rows


def read_hub(dataset_id: str, split: str, config: str | None = None) -> list[dict]:
    """A split of a hub dataset through `datasets` (needs the hub or a local datasets cache)."""
    try:
        from datasets import load_dataset

        return load_dataset(dataset_id, config, split=split).to_list()
    except Exception as e:
        raise PeftlabError(
            f"task.hub: cannot load '{dataset_id}' split '{split}' ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "offline? use task.data_files with local JSONL/CSV/Parquet files instead"
        ) from None
