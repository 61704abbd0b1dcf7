"""On a trained run: the token the output copies gets the largest attribution; the command writes
the heatmap, HTML and JSON; user mistakes are PeftlabErrors that say what is wrong.

The task: the input is three random letters, the target is the middle one. Nothing but the middle
letter tells the model what to write, so integrated gradients must put it first, also when the
same letter appears elsewhere in the input (then the middle position must still win). Tiny GPT-Neo,
full fine-tuning, 150 steps: exact match 1.0 on the test letters in about a second. Training and
attribution are deterministic on CPU (fixed seeds), so the check cannot flake; measured margins over
seeds 0-4 with the mean baseline: the middle letter wins all 40 test examples, by 1.2x to 100x
over the runner-up (at least 2.06x at seed 0, used here, in the plain random order: length grouping
is off, every example has the same length anyway).

The baseline here is 'mean', not the default 'pad': a tiny model's pad row (byte 0) is an untrained
random vector, so "a prompt of padding" is a random prompt (with it, 4 of the 40 examples go to
another token, 3 of them to the newline before the answer). On real models the pad token is a
trained one (SmolLM2: <|im_end|>).
"""

import json
import random
import string

import pytest
import yaml

from peftlab.cli import main
from peftlab.config import load_config
from peftlab.errors import PeftlabError
from peftlab.inspect import attribute, attribution_html, save_attribution
from peftlab.training.train import train


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("copy_middle")
    rng = random.Random(0)
    for split, n in (("train", 400), ("validation", 8), ("test", 8)):
        rows = []
        for i in range(n):
            a, b, c = (rng.choice(string.ascii_lowercase) for _ in range(3))
            rows.append({"uid": f"{split}-{i}", "letters": a + b + c, "answer": b})
        (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "name": "copy-middle",
        "output_dir": str(tmp / "runs"),
        "model": {"name": "tiny-gpt-neo"},
        "method": {"name": "full"},
        "task": {
            "name": "copy_middle",
            "data_files": {s: str(tmp / f"{s}.jsonl") for s in ("train", "validation", "test")},
            "input_template": "{letters}",
            "target_field": "answer",
            "id_field": "uid",
            "metric": "exact_match",
            "max_new_tokens": 4,
        },
        "train": {"max_steps": 150, "batch_size": 16, "lr": 3e-3, "group_by_length": False},
        "eval": {"batch_size": 8},
    }
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = train(load_config(tmp / "cfg.yaml"))
    assert json.loads((run_dir / "summary.json").read_text())["test"]["exact_match"] == 1.0
    return run_dir


def test_the_copied_letter_gets_the_largest_attribution(copy_run):
    for i in range(8):
        r = attribute(copy_run, "test", i, steps=32, baseline="mean")
        scores = r["scores"]
        assert len(r["tokens"]) == 4 and r["tokens"][3] == "\n"  # the three letters, then GPT-Neo's newline
        assert r["output"] == r["tokens"][1], (i, r["tokens"], r["output"])
        ranked = sorted(range(len(scores)), key=lambda k: -scores[k])
        assert ranked[0] == 1, (i, r["tokens"], scores)
        assert scores[1] > 1.5 * abs(scores[ranked[1]]), (i, r["tokens"], scores)


def test_attribute_command_writes_heatmap_html_and_json(copy_run, capsys):
    assert main(["attribute", str(copy_run), "--example", "2", "--steps", "16"]) == 0
    out = capsys.readouterr().out.split()
    folder = copy_run / "attributions"
    assert out == [str(folder / f"test-2.{ext}") for ext in ("json", "png", "html")]
    data = json.loads((folder / "test-2.json").read_text())
    assert data["split"] == "test" and data["index"] == 2 and data["steps"] == 16 and data["method"] == "full"
    assert len(data["tokens"]) == len(data["scores"]) == 4
    assert (folder / "test-2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "test-2.html").read_text() == attribution_html(data)


def test_save_attribution_round_trips(copy_run, tmp_path):
    r = attribute(copy_run, "validation", 0, steps=8)
    paths = save_attribution(r, tmp_path)
    assert json.loads(paths["json"].read_text())["scores"] == pytest.approx(r["scores"])
    assert paths["png"].name == "validation-0.png"


def test_user_mistakes_are_clear_errors(copy_run, tmp_path, capsys):
    with pytest.raises(
        PeftlabError,
        match=r"--example 8 is out of range: the test split .* has 8 examples "
        r"\(indices 0..7\)",
    ):
        attribute(copy_run, "test", 8)
    with pytest.raises(PeftlabError, match="unknown split 'dev'"):
        attribute(copy_run, "dev", 0)
    with pytest.raises(PeftlabError, match="not a run folder"):
        attribute(tmp_path, "test", 0)
    with pytest.raises(SystemExit) as e:  # refused by the command line, before the run is read
        main(["attribute", str(copy_run), "--example", "-1"])
    assert e.value.code == 2 and "argument --example: must be a whole number >= 0, got -1" in capsys.readouterr().err
