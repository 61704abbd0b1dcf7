import subprocess
import sys

import pytest

from peftlab.cli import main


@pytest.mark.parametrize("cmd", ["train", "eval", "generate", "demo", "methods", "merge"])
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: peftlab " + cmd in capsys.readouterr().out


def test_bad_config_is_a_message_and_exit_2_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: {name: lora, rank: 0}\ntrain: {max_steps: 3}\n")
    r = subprocess.run([sys.executable, "-m", "peftlab", "train", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "method.rank" in r.stderr and "Traceback" not in r.stderr


def test_missing_run_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_generate_with_a_trained_run(tmp_path, copy_task, capsys):
    from peftlab.training.train import train
    from tests.test_train import make_config

    run_dir = train(make_config(tmp_path, copy_task, max_steps=2, eval_every=None))
    capsys.readouterr()
    assert main(["generate", str(run_dir), "honey", "lemon", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.strip()
    # the task template is applied by default: "honey" gives what the full prompt gives with --raw
    assert main(["generate", str(run_dir), "Repeat: honey", "Repeat: lemon", "--raw", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out == out
