"""The tested dependency set (requirements.lock) and the guard that warns outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from peftlab import cli, versions
from peftlab.rundir.runio import environment

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


def fake_versions(monkeypatch, **override):
    real = versions.installed
    monkeypatch.setattr(versions, "installed", lambda pkg: override.get(pkg, real(pkg)))


def test_tested_releases_are_the_locked_ones():
    pins = versions.read_lock(LOCK)
    assert {pkg: pins[pkg] for pkg in versions.TESTED} == versions.TESTED
    # Every package of the dependency set is pinned, not only the three guarded ones.
    assert {"accelerate", "datasets", "tokenizers", "safetensors", "pytest"} <= set(pins)


def test_the_suite_runs_with_the_locked_releases_or_says_which_differ():
    """Under `make test` nothing differs; under `make test-newest` the differences are exactly the
    packages whose release is not the locked one."""
    pins = versions.read_lock(LOCK)
    differ = versions.untested()
    assert set(differ) == {p for p in versions.TESTED if versions.release(versions.installed(p)) != pins[p]}


def test_cli_warns_once_naming_installed_and_tested(monkeypatch, capsys):
    monkeypatch.delenv(versions.QUIET)
    fake_versions(monkeypatch, transformers="9.9.9", torch=versions.TESTED["torch"] + "+cpu")
    assert cli.main(["methods"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "warning" in line]
    assert len(lines) == 1, err
    assert "transformers 9.9.9" in lines[0] and f"transformers {versions.TESTED['transformers']}" in lines[0]
    assert "torch 2" not in lines[0].split(";")[0]  # the tested torch with a build label is not untested


def test_no_warning_with_the_tested_releases_or_when_silenced(monkeypatch, capsys):
    monkeypatch.delenv(versions.QUIET)
    fake_versions(monkeypatch, **versions.TESTED)
    assert cli.main(["methods"]) == 0
    assert "warning" not in capsys.readouterr().err
    fake_versions(monkeypatch, peft="0.1.0")
    monkeypatch.setenv(versions.QUIET, "1")
    assert not versions.warn_if_untested()


def test_a_missing_package_is_named(monkeypatch):
    fake_versions(monkeypatch, peft=None)
    assert "peft missing" in versions.warning()


def test_summary_records_versions_and_which_were_untested(monkeypatch):
    # Every other guarded package at its tested release, so that `make test-newest` (where peft or torch
    # may be newer too) checks the same thing.
    fake_versions(monkeypatch, **{**versions.TESTED, "transformers": "9.9.9"})
    env = environment()
    assert env["versions"]["transformers"] and env["versions"]["tokenizers"]
    assert env["untested_versions"] == {"transformers": versions.TESTED["transformers"]}


def test_lock_lines_pin_releases_without_build_labels_or_editables():
    freeze = [
        "torch==2.13.0+cpu",
        "-e git+https://x/peftlab#egg=peftlab",
        "peftlab==0.1.0",
        "Foo_Bar==1.2",
        "pkg @ file:///tmp/pkg.whl",
        "",
    ]
    assert versions.lock_lines(freeze) == ["Foo_Bar==1.2", "torch==2.13.0"]


def test_read_lock_names_a_bad_line(tmp_path):
    bad = tmp_path / "x.lock"
    bad.write_text("# header\ntorch==2.13.0\ntransformers>=5\n")
    with pytest.raises(ValueError, match=r"x.lock:3: expected NAME==VERSION, got 'transformers>=5'"):
        versions.read_lock(bad)


def test_lock_changes_lists_moved_and_new_packages_only():
    lock = {"torch": "2.13.0", "foo-bar": "1.0", "peft": "0.21.2"}
    lines = ["Foo_Bar==1.1", "peft==0.21.2", "torch==2.13.0", "zeta==3"]
    assert versions.lock_changes(lock, lines) == ["Foo_Bar: 1.0 -> 1.1", "zeta: (new) -> 3"]
