"""What may be aggregated: seeds of one setting, scored on the same examples.

A label's runs are averaged as seeds, so they must differ in the seed only (their run names and
folders aside); a comparison's runs are ranked against each other, so every one must have scored
the same test examples (``summary.json``'s ``test_ids_sha256``). Anything else is refused with the
runs and the settings that differ, never averaged silently.
"""

from __future__ import annotations

from peftlab.errors import PeftlabError
from peftlab.report.runs import Run

# Config keys that may differ between the seeds of one label: they name the run, not what it does.
PER_RUN_KEYS = ("name", "seed", "output_dir", "trackers")


def _flat(config: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, path + "."))
        else:
            out[path] = value
    return out


def differing_settings(a: dict, b: dict) -> list[str]:
    """Dotted config keys whose values differ between two run configs, per-run keys aside."""
    fa = _flat({k: v for k, v in a.items() if k not in PER_RUN_KEYS})
    fb = _flat({k: v for k, v in b.items() if k not in PER_RUN_KEYS})
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def check_seeds_of_one_setting(label: str, runs: list[Run]) -> None:
    """PeftlabError when the runs of ``label`` differ in more than their seed."""
    with_config = [r for r in runs if r.config]
    for other in with_config[1:]:
        keys = differing_settings(with_config[0].config, other.config)
        if keys:
            first = with_config[0]
            shown = ", ".join(f"{k} ({_get(first.config, k)!r} vs {_get(other.config, k)!r})" for k in keys[:5])
            raise PeftlabError(
                f"label {label!r}: runs {first.dir} and {other.dir} differ in more than the seed: {shown}. "
                "A label's runs are averaged as seeds of one setting; give the other setting its own label "
                "(config key `label`) or move it to another folder"
            )


def check_same_examples(task: str, runs: list[Run]) -> None:
    """PeftlabError when the runs of one comparison scored different test examples."""
    hashes: dict[str, list[Run]] = {}
    for r in runs:
        if r.summary.test_ids_sha256:  # older runs did not record it
            hashes.setdefault(r.summary.test_ids_sha256, []).append(r)
    if len(hashes) > 1:
        groups = "; ".join(
            f"{', '.join(r.name for r in rs)} ({rs[0].summary.test_examples} examples)" for rs in hashes.values()
        )
        raise PeftlabError(
            f"task {task}: these runs scored different test examples, so their scores cannot be ranked "
            f"together: {groups}. Rerun them with the same task settings (max_test, data files)"
        )


def _get(config: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config
