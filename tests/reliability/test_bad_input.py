"""Property-based: hundreds of generated bad configs and data files. Every one ends in a peftlab
error message and exit code 2 (or is valid and passes), never in an uncaught exception."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftlab.cli import main

ROWS = [{"uid": f"u{i}", "word": w, "answer": w} for i, w in enumerate(["apple", "river", "stone", "cloud"])]
SECTIONS = {
    "model": ["name", "dtype", "trust_remote_code", "chat_template"],
    "method": ["name", "rank", "alpha", "dropout", "num_virtual_tokens", "reduction_factor", "methods", "rnak"],
    "task": [
        "name",
        "input_template",
        "target_field",
        "metric",
        "output_type",
        "label_words",
        "max_new_tokens",
        "shots",
        "reader",
        "reader_options",
        "database",
        "id_field",
        "choices_field",
        "validation_size",
        "max_source_tokens",
        "hub_splits",
        "data_dir",
        "too_long",
        "dedupe",
    ],
    "train": [
        "lr",
        "batch_size",
        "max_steps",
        "epochs",
        "max_flops",
        "evals",
        "schedule",
        "warmup_ratio",
        "checkpoint_every",
        "grad_accum",
    ],
    "eval": ["batch_size", "max_test", "num_beams"],
    "": ["name", "seed", "output_dir", "trackers", "label", "bogus"],
}
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(10**6, 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "lora",
            "hybrid",
            "none",
            "tiny-t5",
            "sql_demo",
            "dialogsum",
            "geoquery",
            "rouge",
            "classify",
            "multiple_choice",
            "{word}",
            "{nope}",
            "{",
            "../../etc",
            "answer",
            "cosine",
            "bleu",
        ]
    ),
    st.lists(
        st.one_of(
            st.integers(-2, 2), st.text(max_size=5), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)
        ),
        max_size=3,
    ),
    st.dictionaries(
        st.sampled_from(["name", "a", "0", "split_by", "test"]),
        st.one_of(st.integers(), st.text(max_size=4)),
        max_size=3,
    ),
)


def base_config(folder: Path) -> dict:
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return {
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 4},
        "task": {
            "name": "copy",
            "data_files": {s: str(folder / f"{s}.jsonl") for s in ("train", "validation", "test")},
            "input_template": "Repeat: {word}",
            "target_field": "answer",
            "id_field": "uid",
            "metric": "exact_match",
            "dedupe": "off",  # the same rows in every split
        },
        "train": {"max_steps": 2},
        "output_dir": str(folder / "runs"),
    }


def check(path: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["check", str(path)])
    return code, err.getvalue()


def assert_clean(code: int, err: str) -> None:
    assert code in (0, 2), code
    assert "Traceback" not in err
    if code == 2:
        assert "peftlab: error:" in err and len(err.strip()) > len("peftlab: error:")


mutation = st.tuples(st.sampled_from(sorted(SECTIONS)), st.data())


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(sorted(SECTIONS)), st.integers(0, 30), values, st.booleans()), min_size=1, max_size=4
    )
)
def test_generated_bad_configs_end_in_a_clear_error(edits):
    with tempfile.TemporaryDirectory() as d:
        cfg = base_config(Path(d))
        for section, k, value, delete in edits:
            keys = SECTIONS[section]
            key = keys[k % len(keys)]
            node = cfg if section == "" else cfg.setdefault(section, {})
            if not isinstance(node, dict):
                continue
            if delete:
                node.pop(key, None)
            else:
                node[key] = value
        path = Path(d) / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        assert_clean(*check(path))


lines = st.one_of(
    st.builds(lambda r: json.dumps(r), st.sampled_from(ROWS)),
    st.builds(
        lambda r, k: json.dumps({kk: v for kk, v in r.items() if kk != k}),
        st.sampled_from(ROWS),
        st.sampled_from(["uid", "word", "answer"]),
    ),
    st.builds(lambda v: json.dumps(v), values),
    st.text(max_size=30),
    st.just('{"uid": "u0", "word": "dup", "answer": "dup"}'),
    st.just('{"uid": 1, "word": '),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    train=st.lists(lines, max_size=6),
    test=st.lists(lines, max_size=6),
    raw=st.one_of(st.none(), st.binary(max_size=40)),
    yaml_text=st.one_of(st.none(), st.text(max_size=40)),
)
def test_generated_bad_data_and_files_end_in_a_clear_error(train, test, raw, yaml_text):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        cfg = base_config(folder)
        (folder / "train.jsonl").write_text("\n".join(train), encoding="utf-8")
        (folder / "test.jsonl").write_text("\n".join(test), encoding="utf-8")
        if raw is not None:
            (folder / "validation.jsonl").write_bytes(raw)
        path = folder / "cfg.yaml"
        if yaml_text is not None:
            path.write_text(yaml_text, encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(cfg))
        assert_clean(*check(path))


def test_the_fuzzing_base_is_valid_and_a_known_bad_value_is_named(tmp_path):
    """The generated cases start from a valid config, so an exit code 2 is the mutation's doing."""
    cfg = base_config(tmp_path)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert check(path)[0] == 0
    cfg["method"]["rank"] = 0
    path.write_text(yaml.safe_dump(cfg))
    code, err = check(path)
    assert code == 2 and "rank" in err and "Traceback" not in err


# --- command-line numbers: every flag that takes a number, with what it allows (None: no upper bound) ---
NUMERIC_FLAGS = {
    "eval": {"--limit": (1, None), "--num-beams": (1, 64)},
    "generate": {"--max-new-tokens": (1, 4096), "--num-beams": (1, 64)},
    "attribute": {"--example": (0, None), "--steps": (1, 1024), "--batch-size": (1, None)},
    "compare": {"--parallel": (1, None)},
}
numbers = st.one_of(
    st.integers(-3, 5),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["", "1.5", "1e3", "0x10", "ten", "nan", "inf", " 2", "+3", "-0"]),
)


def run(argv: list[str]) -> tuple[int, str]:
    """main's exit code and stderr; argparse exits (SystemExit) rather than returns on a bad flag."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def allowed(value, low: int, high: int | None) -> bool:
    try:
        n = int(str(value))
    except ValueError:
        return False
    return n >= low and (high is None or n <= high)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(command=st.sampled_from(sorted(NUMERIC_FLAGS)), data=st.data())
def test_generated_command_line_numbers_end_in_a_clear_error(command, data):
    """Every flag value is either allowed, or exit 2 with argparse's message naming the flag and the range.
    The run folder (experiment file) does not exist, so an allowed set of flags ends in its own exit 2."""
    flags = NUMERIC_FLAGS[command]
    chosen = data.draw(st.lists(st.sampled_from(sorted(flags)), min_size=1, max_size=3, unique=True))
    values = {flag: data.draw(numbers) for flag in chosen}
    with tempfile.TemporaryDirectory() as d:
        target = str(Path(d) / "missing")
        argv = [command, target] + (["hello"] if command == "generate" else [])
        argv += ["--example", "0"] if command == "attribute" and "--example" not in values else []
        for flag, value in values.items():
            argv += [f"{flag}={value}"]
        code, err = run(argv)
        bad = [f for f, v in values.items() if not allowed(v, *flags[f])]
        assert code == 2 and "Traceback" not in err, (argv, err)
        if bad:
            assert any(f"argument {f}:" in err for f in bad), (argv, err)
            low, high = flags[next(f for f in bad if f"argument {f}:" in err)]
            assert f">= {low}" in err or f"from {low} to {high}" in err, err
        else:
            assert "peftlab: error:" in err and "missing" in err, (argv, err)
        assert list(Path(d).iterdir()) == []  # nothing written


# --- numbers in a run config: out of numpy's seed range, non-finite, huge, negative ---
NUMERIC_KEYS = [
    ("", "seed"),
    ("train", "max_steps"),
    ("train", "epochs"),
    ("train", "max_flops"),
    ("train", "max_seconds"),
    ("train", "lr"),
    ("train", "batch_size"),
    ("train", "warmup_ratio"),
    ("eval", "num_beams"),
    ("eval", "max_test"),
    ("task", "max_new_tokens"),
]
config_numbers = st.one_of(
    st.integers(-3, 3),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**32 - 1, 2**32, -(2**31)]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(st.tuples(st.sampled_from(NUMERIC_KEYS), config_numbers), min_size=1, max_size=3))
def test_generated_out_of_range_numbers_in_a_run_config(edits):
    """A seed outside 0..2**32-1 or a non-finite number is exit 2 naming the key; anything `check` accepts
    is a number the run can use."""
    with tempfile.TemporaryDirectory() as d:
        cfg = base_config(Path(d))
        for (section, key), value in edits:
            (cfg if section == "" else cfg.setdefault(section, {}))[key] = value
        if any(k in cfg["train"] for k in ("epochs", "max_flops", "max_seconds")):
            cfg["train"].pop("max_steps", None)
        path = Path(d) / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        code, err = check(path)
        assert_clean(code, err)
        final = {(s, k): (cfg if s == "" else cfg.get(s, {})).get(k) for s, k in NUMERIC_KEYS}
        seed = final[("", "seed")]
        if isinstance(seed, (int, float)) and not 0 <= seed <= 2**32 - 1:
            assert code == 2 and "seed:" in err, err
        non_finite = [k for (s, k), v in final.items() if isinstance(v, float) and not math.isfinite(v)]
        if non_finite:
            assert code == 2 and any(f"{k}:" in err for k in non_finite), err
        assert not (Path(d) / "runs").exists()


# --- data files with no rows ---
file_kinds = st.sampled_from(["rows", "empty", "blank lines", "csv header only", "csv rows"])


def write_split(folder: Path, split: str, kind: str) -> Path:
    if kind.startswith("csv"):
        path = folder / f"{split}.csv"
        body = "".join(f"{r['uid']},{r['word']},{r['answer']}\n" for r in ROWS) if kind == "csv rows" else ""
        path.write_text("uid,word,answer\n" + body)
        return path
    path = folder / f"{split}.jsonl"
    text = {"rows": "".join(json.dumps(r) + "\n" for r in ROWS), "empty": "", "blank lines": "\n \n\n"}[kind]
    path.write_text(text)
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(kinds=st.fixed_dictionaries(dict.fromkeys(("train", "validation", "test"), file_kinds)))
def test_generated_empty_data_files_are_named_at_check(kinds):
    with tempfile.TemporaryDirectory() as d:
        cfg = base_config(Path(d))
        files = {s: write_split(Path(d), s, kind) for s, kind in kinds.items()}
        cfg["task"]["data_files"] = {s: str(p) for s, p in files.items()}
        path = Path(d) / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        code, err = check(path)
        empty = [str(files[s]) for s, kind in kinds.items() if kind in ("empty", "blank lines", "csv header only")]
        if empty:
            assert code == 2 and any(f"{p}: the" in err and "no rows" in err for p in empty), err
        else:
            assert code == 0, err
