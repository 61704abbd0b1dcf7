"""Every folder peftlab derives from a name in a config stays inside output_dir: a comparison's name, a
run's name (or its default, task.name-method.name), lr-search folders and report files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from peftlab.cli import main
from peftlab.errors import PeftlabError


def experiment(tmp_path: Path, copy_task: dict, name: str) -> Path:
    exp = {
        "name": name,
        "output_dir": str(tmp_path / "box" / "a" / "runs"),  # '../../../x' is tmp_path/x
        "model": {"name": "tiny-llama"},
        "task": copy_task,
        "budget": {"steps": 1},
        "trackers": [],
        "lr_search": "off",
        "methods": [{"label": "zs", "name": "none"}],
    }
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.exists() else set()


@pytest.mark.parametrize("name", ["../../../elsewhere/ESCAPE", "../ESCAPE", "..", "a/../../ESCAPE", "/ABSOLUTE"])
def test_comparison_name_cannot_leave_the_output_folder(tmp_path, copy_task, capsys, name):
    if name.startswith("/"):
        name = str(tmp_path / "abs" / "ESCAPE")
    path = experiment(tmp_path, copy_task, name)
    before = files_under(tmp_path)
    assert main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cmp.yaml" in err and "name" in err and "plain folder name" in err, err
    assert files_under(tmp_path) == before  # nothing written anywhere, inside output_dir or out


def test_run_folder_named_after_the_task_stays_inside_output_dir(tmp_path, copy_task, capsys):
    cfg = {
        "output_dir": str(tmp_path / "box" / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "none"},
        "task": {**copy_task, "name": "../../../ESCAPE"},  # no run name: the folder is task.name-method.name
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    before = files_under(tmp_path)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "task.name-method.name" in err and "leaves output_dir" in err, err
    assert files_under(tmp_path) == before


def test_containment_follows_symlinks_and_dotdot(tmp_path):
    from peftlab.rundir.runio import inside

    root = tmp_path / "runs"
    (root / "ok").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path)  # inside by its name, outside once resolved
    assert inside(root, root / "ok" / "x", "name") == root / "ok" / "x"
    for bad in (root / "link" / "x", root / ".." / "x", root, Path("/etc/x")):
        with pytest.raises(PeftlabError, match="name: .* leaves output_dir"):
            inside(root, bad, "name")


def test_lr_search_folders_stay_inside_the_comparison(tmp_path):
    from peftlab.comparison.lr_search import clear_search, search_config

    with pytest.raises(PeftlabError, match="label '../../x'.*leaves output_dir"):
        search_config({"label": "../../x", "train": {}}, 1e-3, tmp_path / "cmp", 0.5)
    victim = tmp_path / "victim-lr0.001"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    with pytest.raises(PeftlabError, match="leaves output_dir"):
        clear_search(tmp_path / "cmp", {"../../victim": [1e-3]})  # would empty a folder outside
    assert (victim / "keep.txt").read_text() == "mine"
