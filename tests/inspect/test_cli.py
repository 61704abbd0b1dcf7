import pytest

from peftlab.cli import main


@pytest.mark.parametrize("cmd", ["attribute", "data", "params"])
def test_inspection_commands_have_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: peftlab " + cmd in capsys.readouterr().out


def test_unknown_split_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["attribute", str(tmp_path), "--example", "0", "--split", "dev"])
    assert e.value.code == 2 and "invalid choice: 'dev'" in capsys.readouterr().err
