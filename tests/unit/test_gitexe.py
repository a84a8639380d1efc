"""gitquilt.gitexe: git is found only on absolute PATH entries (RELIABILITY.md §53)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gitquilt import gitexe


def test_safe_path_drops_empty_dot_and_relative_entries() -> None:
    sep = os.pathsep
    assert gitexe.safe_path(sep.join(["", ".", "/usr/bin", "bin", "./x", "/opt/y", ""])) == sep.join(["/usr/bin", "/opt/y"])


def test_git_executable_ignores_a_git_in_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "git"
    fake.write_text("#!/bin/sh\ntouch PWNED\n")
    fake.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.pathsep.join([".", "", os.environ["PATH"]]))
    monkeypatch.setattr(gitexe, "_GIT", None)
    found = gitexe.git_executable()
    assert os.path.isabs(found) and Path(found).resolve() != fake.resolve()
    gitexe.run_git(["--version"], cwd=tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_git_executable_fails_when_only_relative_entries_hold_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "git"
    fake.write_text("#!/bin/sh\ntouch PWNED\n")
    fake.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.pathsep.join([".", ""]))
    monkeypatch.setattr(gitexe, "_GIT", None)
    with pytest.raises(gitexe.GitCommandError, match="git was not found"):
        gitexe.git_executable()
    assert not (tmp_path / "PWNED").exists()
    monkeypatch.setattr(gitexe, "_GIT", None)


def test_run_git_failure_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(gitexe.GitCommandError) as info:
        gitexe.run_git(["rev-parse", "--verify", "nope"], cwd=tmp_path)
    assert "\n" not in str(info.value)


def test_is_null_oid() -> None:
    assert gitexe.is_null_oid("0" * 40) and gitexe.is_null_oid("0" * 64)
    assert not gitexe.is_null_oid("0" * 39 + "1") and not gitexe.is_null_oid("")
