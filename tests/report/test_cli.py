"""`peftlab report DIR`: prints the leaderboard and report.html's path; clear errors, exit code 2."""

from __future__ import annotations

import pytest

from peftlab.cli import main
from tests.report.fakes import sql_comparison


def test_report_command(tmp_path, capsys):
    folder = sql_comparison(tmp_path / "cmp")
    assert main(["report", str(folder), "--examples", "0,5"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == str(folder / "report.html")
    assert "lora+prompt_tuning" in err and "execution_accuracy" in err and "best" in err
    assert "test example #5" in (folder / "report.html").read_text()


@pytest.mark.parametrize("case", ["missing", "empty", "run_folder"])
def test_report_errors(tmp_path, capsys, case):
    if case == "missing":
        target, expect = tmp_path / "nope", "no such folder"
    elif case == "empty":
        (tmp_path / "unfinished").mkdir()  # a run folder without summary.json is not finished
        target, expect = tmp_path, "no finished runs"
    else:
        target, expect = sql_comparison(tmp_path / "cmp") / "sql_demo-lora-s0", "single run folder"
    assert main(["report", str(target)]) == 2
    assert expect in capsys.readouterr().err


def test_examples_out_of_range_and_malformed(tmp_path, capsys):
    folder = sql_comparison(tmp_path / "cmp")
    assert main(["report", str(folder), "--examples", "100,200"]) == 2
    assert "64 test predictions" in capsys.readouterr().err
    assert main(["report", str(folder), "--examples", "1,500"]) == 0  # in-range ones shown, the rest noted
    assert "Example(s) 500 skipped" in (folder / "report.html").read_text()
    with pytest.raises(SystemExit) as exc:
        main(["report", str(folder), "--examples", "one,two"])
    assert exc.value.code == 2
    assert "comma-separated" in capsys.readouterr().err
