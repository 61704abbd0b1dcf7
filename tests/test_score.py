import csv
import json

import pytest

from peftlab.cli import main
from peftlab.errors import PeftlabError
from peftlab.evaluation.score import score_csv
from peftlab.tasks.metrics import METRICS


def _write(path, rows, header=("id", "input", "reference", "prediction")):
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


PREDS = ["the the cat", "a b", "Dogs run, fast."]
REFS = [["the cat sat", "the the dog"], ["a b c d"], ["dogs run fast", "Dogs run, fast."]]


@pytest.fixture
def pred_csv(tmp_path):
    rows = [[i, f"input {i}", " ||| ".join(r), p] for i, (p, r) in enumerate(zip(PREDS, REFS))]
    return _write(tmp_path / "predictions.csv", rows)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_score_cli_json_equals_calling_the_metric(pred_csv, metric, capsys):
    assert main(["score", str(pred_csv), "--metric", metric, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == pytest.approx(METRICS[metric](PREDS, REFS))
    assert score_csv(pred_csv, metric) == pytest.approx(out)


def test_score_cli_key_value_lines(pred_csv, capsys):
    assert main(["score", str(pred_csv), "--metric", "bleu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = METRICS["bleu"](PREDS, REFS)
    assert [ln.split("=")[0] for ln in lines] == list(expected)
    for ln in lines:
        key, value = ln.split("=")
        assert float(value) == pytest.approx(expected[key], abs=1e-4)


def test_missing_prediction_column_exit_2_names_file_and_column(tmp_path, capsys):
    path = _write(tmp_path / "bad.csv", [[0, "x", "y"]], header=("id", "input", "reference"))
    assert main(["score", str(path), "--metric", "accuracy"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'prediction'" in err and "Traceback" not in err


def test_empty_file_short_row_and_no_rows(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(PeftlabError, match="empty"):
        score_csv(empty, "rouge")
    short = tmp_path / "short.csv"
    short.write_text("id,input,reference,prediction\n0,x,y,z\n1,x,y\n")
    with pytest.raises(PeftlabError, match=r"short\.csv: line 3: 3 fields, expected 4"):
        score_csv(short, "rouge")
    header_only = _write(tmp_path / "header.csv", [])
    with pytest.raises(PeftlabError, match="no rows"):
        score_csv(header_only, "rouge")
    with pytest.raises(PeftlabError, match="no such file"):
        score_csv(tmp_path / "missing.csv", "rouge")
    with pytest.raises(PeftlabError, match="did you mean 'bleu'"):
        score_csv(header_only, "blue")


def test_reads_what_write_predictions_writes(tmp_path):
    from types import SimpleNamespace

    from peftlab.rundir.runio import write_predictions

    examples = [SimpleNamespace(id=i, prompt=f'line "{i}",\nsecond', references=r) for i, r in enumerate(REFS)]
    path = tmp_path / "predictions.csv"
    write_predictions(path, examples, PREDS)
    assert score_csv(path, "rouge") == pytest.approx(METRICS["rouge"](PREDS, REFS))
