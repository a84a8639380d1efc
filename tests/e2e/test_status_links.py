"""Symbolic links at a package's path, among its parent directories or at its pointer:
`status` reports an error (never "clean", whatever the link leads to) and `checkout`
refuses in one line; neither reads or writes through the link. `outside` is a directory
beside the repository; the whole of both is snapshot before and compared after.

(Checkout of a linked package directory, of a linked subdirectory and `checkout --rev`
under a linked parent are in tests/security/test_hydration_links.py.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Repo
from tests.security.hostile import snapshot

DATA = {"a.txt": "a\n", "sub/b.txt": "b\n"}


def _outside(repo: Repo) -> Path:
    out = repo.root.parent / "outside"
    out.mkdir(exist_ok=True)
    return out


def _assert_status_refuses(repo: Repo, path: str, expected: str, *args: str) -> None:
    """status (plain, --check, --json) of ``path`` is an error naming ``expected``, exit 1."""
    before = snapshot(repo.root.parent)
    for extra in ((), ("--check",)):
        r = repo.quilt("status", *extra, *args)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"{path} " in r.stdout or f"{path}:" in r.stdout, r.stdout
        assert ": error" in r.stdout and "clean" not in r.stdout, r.stdout
        assert expected in r.stdout, r.stdout
        assert r.stderr.strip() == f"error: 1 package(s) could not be checked: {path}", r.stderr
    r = repo.quilt("status", "--json", *args)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    [st] = [s for s in json.loads(r.stdout) if s["path"] == path]
    assert st["state"] == "error" and expected in st["error"], st
    assert (st["added"], st["changed"], st["deleted"]) == ([], [], [])
    assert snapshot(repo.root.parent) == before


def _assert_checkout_refuses(repo: Repo, path: str, expected: str) -> None:
    before = snapshot(repo.root.parent)
    for extra in ((), ("--force",)):
        r = repo.quilt("checkout", *extra, path)
        assert r.returncode == 1, r.stdout + r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and expected in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert snapshot(repo.root.parent) == before


@pytest.fixture
def dir_package(repo: Repo) -> Repo:
    for key, text in DATA.items():
        repo.write(f"images/{key}", text)
    repo.quilt("add", "images", check=True)
    repo.git("commit", "-qm", "images")
    assert repo.quilt("status", "--check").returncode == 0  # warm the stat cache
    return repo


@pytest.fixture
def file_package(repo: Repo) -> Repo:
    repo.write("model.bin", "weights\n")
    repo.quilt("add", "model.bin", check=True)
    repo.git("commit", "-qm", "model")
    assert repo.quilt("status", "--check").returncode == 0
    return repo


@pytest.mark.parametrize("target", ["outside-copy", "inside-copy", "dangling", "root"])
def test_directory_package_replaced_by_a_symlink(dir_package: Repo, target: str) -> None:
    repo = dir_package
    if target == "outside-copy":  # the very same files, elsewhere
        dest: str = str(_outside(repo) / "images")
        shutil.copytree(repo.root / "images", dest)
    elif target == "inside-copy":
        shutil.copytree(repo.root / "images", repo.root / "copy")
        dest = "copy"
    elif target == "dangling":
        dest = str(_outside(repo) / "nothing")
    else:
        dest = "/"
    shutil.rmtree(repo.root / "images")
    (repo.root / "images").symlink_to(dest, target_is_directory=True)
    _assert_status_refuses(repo, "images", "images is a symbolic link; refusing to follow it")
    _assert_status_refuses(repo, "images", "images is a symbolic link", "images")
    _assert_checkout_refuses(repo, "images", "images is a symbolic link")


@pytest.mark.parametrize("target", ["outside-copy", "inside-copy", "to-itself"])
def test_single_file_package_replaced_by_a_symlink(file_package: Repo, target: str) -> None:
    repo = file_package
    if target == "outside-copy":
        dest = str(_outside(repo) / "model.bin")
        shutil.copy(repo.root / "model.bin", dest)
    elif target == "inside-copy":
        shutil.copy(repo.root / "model.bin", repo.root / "copy.bin")
        dest = "copy.bin"
    else:
        dest = "model.bin"  # a loop
    (repo.root / "model.bin").unlink()
    (repo.root / "model.bin").symlink_to(dest)
    _assert_status_refuses(repo, "model.bin", "model.bin is a symbolic link; refusing to follow it")
    _assert_checkout_refuses(repo, "model.bin", "model.bin is a symbolic link")


@pytest.mark.parametrize("pointer_there", [True, False], ids=["pointer-through-link", "pointer-hidden"])
def test_parent_directory_is_a_symlink(repo: Repo, pointer_there: bool) -> None:
    for key, text in DATA.items():
        repo.write(f"data/images/{key}", text)
    repo.quilt("add", "data/images", check=True)
    repo.git("commit", "-qm", "data")
    outside = _outside(repo)
    shutil.move(repo.root / "data", outside / "data")
    if not pointer_there:
        (outside / "data" / "images.quilt").unlink()
    (repo.root / "data").symlink_to(outside / "data", target_is_directory=True)
    expected = "data/images: parent directory data is a symbolic link; refusing it"
    # without PATHS the package whose pointer git tracks is listed, even when the link hides it
    _assert_status_refuses(repo, "data/images", expected)
    _assert_status_refuses(repo, "data/images", expected, "data/images")
    before = snapshot(repo.root.parent)
    for extra in ((), ("--force",)):
        r = repo.quilt("checkout", *extra, "data/images")
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert ("symbolic link" if pointer_there else "data/images.quilt") in r.stderr, r.stderr
        assert snapshot(repo.root.parent) == before


def test_pointer_file_is_a_symlink(dir_package: Repo) -> None:
    """A pointer leading out of the work tree is not read by status (a hostile clone could
    point one at a private file)."""
    repo = dir_package
    outside = _outside(repo)
    shutil.copy(repo.root / "images.quilt", outside / "images.quilt")
    os.unlink(repo.root / "images.quilt")
    (repo.root / "images.quilt").symlink_to(outside / "images.quilt")
    _assert_status_refuses(repo, "images", "images.quilt is a symbolic link; refusing to follow it")
    _assert_status_refuses(repo, "images", "images.quilt is a symbolic link", "images")
    # dangling: still listed (git tracks it), still an error
    (outside / "images.quilt").unlink()
    _assert_status_refuses(repo, "images", "images.quilt is a symbolic link")


def test_links_inside_the_package_are_changes_never_followed(dir_package: Repo) -> None:
    """A subdirectory or a file replaced by a link to identical data elsewhere: modified."""
    repo = dir_package
    outside = _outside(repo)
    shutil.move(repo.root / "images" / "sub", outside / "sub")
    (repo.root / "images" / "sub").symlink_to(outside / "sub", target_is_directory=True)
    shutil.move(repo.root / "images" / "a.txt", outside / "a.txt")
    (repo.root / "images" / "a.txt").symlink_to(outside / "a.txt")
    before = snapshot(repo.root.parent)
    r = repo.quilt("status", "--check")
    assert r.returncode == 1 and ": modified" in r.stdout, r.stdout + r.stderr
    st = json.loads(repo.quilt("status", "--json", "images").stdout)[0]
    assert st["state"] == "modified"
    assert (st["added"], st["changed"], st["deleted"]) == (["sub"], ["a.txt"], ["sub/b.txt"])
    assert snapshot(repo.root.parent) == before
