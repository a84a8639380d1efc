"""`git quilt status` when the package's shape changed: a directory where the pointer pins a
single file, or the reverse. The file lists can be identical (a directory `x` holding just
`x` lists like the single file `x`), so the stat cache's fingerprint alone cannot tell them
apart; status must still say modified, as checkout refuses both."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import Repo

_PROBE = """
import json, sys
from gitquilt.cli.main import run
rc = run({argv!r})
print(json.dumps({{"rc": rc, "pyarrow": "pyarrow" in sys.modules}}))
"""


def _in_process(repo: Repo, *argv: str) -> dict[str, object]:
    """Run a command in one Python process and say whether it imported pyarrow."""
    p = subprocess.run([sys.executable, "-c", _PROBE.format(argv=list(argv))], cwd=repo.root, env=repo.env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in p.stderr, p.stderr
    result: dict[str, object] = json.loads(p.stdout.strip().splitlines()[-1])
    return result


def _status_json(repo: Repo, *paths: str) -> dict[str, object]:
    r = repo.quilt("status", "--json", *paths)
    assert "Traceback" not in r.stderr, r.stderr
    [st] = json.loads(r.stdout)
    assert isinstance(st, dict)
    return st


def _file_package(repo: Repo, *add_args: str) -> None:
    repo.write("x", "same bytes\n")
    repo.quilt("add", *add_args, "x", check=True)
    repo.git("commit", "-qm", "file package")
    # warm the stat cache: its fingerprint of the pinned manifest now matches the file list
    assert repo.quilt("status", "--check", "x").returncode == 0


def _dir_package(repo: Repo, files: dict[str, str], *add_args: str) -> None:
    for key, text in files.items():
        repo.write(f"y/{key}", text)
    repo.quilt("add", *add_args, "y", check=True)
    repo.git("commit", "-qm", "directory package")
    assert repo.quilt("status", "--check", "y").returncode == 0


def _to_directory(repo: Repo, name: str, files: dict[str, str]) -> None:
    (repo.root / name).unlink()
    for key, text in files.items():
        repo.write(f"{name}/{key}", text)


def _to_file(repo: Repo, name: str, text: str) -> None:
    shutil.rmtree(repo.root / name)
    repo.write(name, text)


@pytest.mark.parametrize("add_args", [(), ("-m", "with a message")], ids=["plain", "message"])
def test_file_package_replaced_by_a_directory_holding_its_namesake(repo: Repo, add_args: tuple[str, ...]) -> None:
    _file_package(repo, *add_args)
    _to_directory(repo, "x", {"x": "same bytes\n"})
    r = repo.quilt("status", "--check", "x")
    assert r.returncode == 1
    assert r.stderr.strip() == "error: packages differ from their pointers"
    assert "x" in r.stdout and ": modified" in r.stdout
    assert "the pointer pins a single file; a directory stands in its place" in r.stdout
    assert "  deleted: x\n" in r.stdout and "  added: x/x\n" in r.stdout
    st = _status_json(repo, "x")
    assert st["state"] == "modified"
    assert st["kind_changed"] == {"pinned": "file", "found": "directory"}
    assert (st["added"], st["changed"], st["deleted"]) == (["x"], [], ["x"])
    assert repo.quilt("status", "--json", "--check").returncode == 1
    # checkout agrees that this is not the package, and status stays right after it
    assert repo.quilt("checkout", "x").returncode == 1
    assert _status_json(repo)["state"] == "modified"
    # back to the single file: clean again
    _to_file(repo, "x", "same bytes\n")
    assert repo.quilt("status", "--check", "x").returncode == 0
    assert _status_json(repo, "x")["kind_changed"] is None


def test_file_package_replaced_by_a_directory_with_more_files(repo: Repo) -> None:
    _file_package(repo)
    _to_directory(repo, "x", {"x": "same bytes\n", "other": "o\n"})
    st = _status_json(repo, "x")
    assert st["state"] == "modified"
    assert st["kind_changed"] == {"pinned": "file", "found": "directory"}
    assert (st["added"], st["changed"], st["deleted"]) == (["other", "x"], [], ["x"])


def test_file_package_replaced_by_an_empty_directory_is_modified_not_unhydrated(repo: Repo) -> None:
    _file_package(repo)
    (repo.root / "x").unlink()
    (repo.root / "x").mkdir()
    st = _status_json(repo, "x")
    assert st["state"] == "modified"
    assert st["kind_changed"] == {"pinned": "file", "found": "directory"}
    assert (st["added"], st["deleted"]) == ([], ["x"])
    assert repo.quilt("status", "--check").returncode == 1
    # an empty directory where the package is a directory is still "not hydrated"
    _dir_package(repo, {"a": "a\n"})
    shutil.rmtree(repo.root / "y")
    (repo.root / "y").mkdir()
    assert _status_json(repo, "y")["state"] == "not hydrated"


@pytest.mark.parametrize("add_args", [(), ("-m", "with a message")], ids=["plain", "message"])
def test_directory_package_holding_its_namesake_replaced_by_a_file(repo: Repo, add_args: tuple[str, ...]) -> None:
    _dir_package(repo, {"y": "same bytes\n"}, *add_args)
    _to_file(repo, "y", "same bytes\n")
    r = repo.quilt("status", "--check")
    assert r.returncode == 1
    assert "the pointer pins a directory; a single file stands in its place" in r.stdout
    assert "  deleted: y/y\n" in r.stdout and "  added: y\n" in r.stdout
    st = _status_json(repo, "y")
    assert st["state"] == "modified"
    assert st["kind_changed"] == {"pinned": "directory", "found": "file"}
    assert (st["added"], st["changed"], st["deleted"]) == (["y"], [], ["y"])
    _to_directory(repo, "y", {"y": "same bytes\n"})
    assert repo.quilt("status", "--check", "y").returncode == 0


def test_directory_package_replaced_by_a_file(repo: Repo) -> None:
    _dir_package(repo, {"a": "a\n", "sub/b": "b\n"})
    _to_file(repo, "y", "a\n")
    st = _status_json(repo, "y")
    assert st["state"] == "modified"
    assert st["kind_changed"] == {"pinned": "directory", "found": "file"}
    assert (st["added"], st["deleted"]) == (["y"], ["a", "sub/b"])


def test_kind_check_keeps_no_op_status_off_pyarrow(repo: Repo) -> None:
    """The kind is settled from the top hash (the manifest add writes without a message),
    so a clean single-file package, or a directory holding its namesake, stays fast."""
    _file_package(repo)
    _dir_package(repo, {"y": "same bytes\n"})
    assert _in_process(repo, "status", "--check") == {"rc": 0, "pyarrow": False}
    _to_directory(repo, "x", {"x": "same bytes\n"})
    assert _in_process(repo, "status", "--check", "x")["rc"] == 1


def test_nested_single_file_package(repo: Repo) -> None:
    repo.write("models/m.bin", b"\x00weights")
    repo.quilt("add", "models/m.bin", check=True)
    repo.git("commit", "-qm", "model")
    assert repo.quilt("status", "--check").returncode == 0
    (repo.root / "models" / "m.bin").unlink()
    repo.write("models/m.bin/m.bin", b"\x00weights")
    r = repo.quilt("status", "models/m.bin")
    assert "  deleted: m.bin\n" in r.stdout and "  added: m.bin/m.bin\n" in r.stdout
    assert _status_json(repo, "models/m.bin")["kind_changed"] == {"pinned": "file", "found": "directory"}
