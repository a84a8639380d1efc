"""End to end: init, add, status, checkout through the real executable."""

from __future__ import annotations

from tests.conftest import Repo


def test_add_status_checkout_roundtrip(repo: Repo) -> None:
    repo.write("images/a.jpg", b"aaa")
    repo.write("images/sub/b.jpg", b"bbb")
    repo.write("images/run.sh", b"#!/bin/sh\n", mode=0o755)
    r = repo.quilt("add", "images", check=True)
    assert "staged images.quilt" in r.stdout
    pointer = repo.read("images.quilt")
    assert b'path = "images"' in pointer
    assert "/images/" in repo.read(".gitignore").decode()
    assert repo.quilt("status", "--check").returncode == 1  # pointer not committed yet
    repo.git("commit", "-qm", "v1")
    assert repo.quilt("status", "--check").returncode == 0

    again = repo.quilt("add", "images", check=True)
    assert "unchanged" in again.stdout
    assert repo.read("images.quilt") == pointer

    import shutil

    shutil.rmtree(repo.root / "images")
    st = repo.quilt("status", "images")
    assert "not hydrated" in st.stdout
    repo.quilt("checkout", check=True)
    assert repo.read("images/sub/b.jpg") == b"bbb"
    assert (repo.root / "images/run.sh").stat().st_mode & 0o100
    assert repo.quilt("status", "--check").returncode == 0


def test_checkout_refuses_local_changes_then_force_saves_them(repo: Repo) -> None:
    repo.write("data/x.txt", "original")
    repo.quilt("add", "data", check=True)
    repo.write("data/x.txt", "my edit")
    r = repo.quilt("checkout", "data")
    assert r.returncode == 1
    assert "data/x.txt" in r.stderr
    assert "Traceback" not in r.stderr
    assert repo.read("data/x.txt") == b"my edit"
    r = repo.quilt("checkout", "--force", "data", check=True)
    assert "saved 1 locally modified" in r.stdout
    assert repo.read("data/x.txt") == b"original"


def test_bad_pointer_is_one_line_error(repo: Repo) -> None:
    repo.write("bad.quilt", "format = 99\n")
    r = repo.quilt("status", "bad")
    assert "upgrade gitquilt" in r.stdout + r.stderr
    r = repo.quilt("checkout", "bad")
    assert r.returncode != 0
    assert "upgrade gitquilt" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_status_of_unreadable_package_exits_1(repo: Repo) -> None:
    repo.write("bad.quilt", b"\xff\xfe not a pointer")
    repo.git("add", "bad.quilt")
    r = repo.quilt("status")
    assert r.returncode == 1
    assert "bad" in r.stdout
    assert "could not be checked" in r.stderr
    assert "Traceback" not in r.stderr
