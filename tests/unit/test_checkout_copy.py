"""Checkout's copy mode: unnamed files (O_TMPFILE) linked in when complete, and the
named-temporary-file way where the platform or file system cannot, or a file is there."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from gitquilt import fsutil
from gitquilt.ops import checkout as co
from tests.conftest import Repo


def _files(n: int = 30) -> dict[str, bytes]:
    files = {f"d{i % 4}/f{i:02d}.bin": os.urandom(50 + i) for i in range(n)}
    files["run.sh"] = b"#!/bin/sh\necho hi\n"
    return files


def _commit_package(repo: Repo, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        repo.write(f"data/{rel}", data, 0o755 if rel.endswith(".sh") else None)
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")


def _checkout(repo: Repo) -> None:
    from gitquilt.ops.workspace import Workspace

    ws = Workspace.open(repo.root)
    try:
        co.checkout(ws, [ws.package_ref(repo.root / "data")])
    finally:
        ws.close()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _assert_hydrated(repo: Repo, files: dict[str, bytes]) -> None:
    assert _tree(repo.root / "data") == files  # no temporary file left either
    assert os.stat(repo.root / "data" / "run.sh").st_mode & stat.S_IXUSR
    assert not os.stat(repo.root / "data" / "d0" / "f00.bin").st_mode & stat.S_IXUSR
    assert repo.quilt("status", "--check").returncode == 0  # the stat cache rows are right


def _empty_and_checkout(repo: Repo, files: dict[str, bytes]) -> None:
    import shutil

    shutil.rmtree(repo.root / "data")
    _checkout(repo)
    _assert_hydrated(repo, files)


def test_unnamed_files_are_linked_in(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files()
    _commit_package(repo, files)
    linked = []
    real_link = os.link

    def link(src: str, dst: str, *args: object, **kwargs: object) -> None:
        linked.append(str(src))
        real_link(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link)
    _empty_and_checkout(repo, files)
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        assert len(linked) == len(files) and all(s.startswith("/proc/self/fd/") for s in linked)


def test_without_o_tmpfile_named_temp_files(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files()
    _commit_package(repo, files)
    real_open = os.open
    refused = []

    def no_tmpfile(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if hasattr(os, "O_TMPFILE") and flags & os.O_TMPFILE == os.O_TMPFILE:
            refused.append(path)
            raise OSError(errno.EOPNOTSUPP, "not supported")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_tmpfile)
    _empty_and_checkout(repo, files)
    assert len(refused) <= 1  # tried once, then named temporary files for the rest


def test_without_proc_named_temp_files(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files()
    _commit_package(repo, files)
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: False if str(p) == "/proc/self/fd" else real_isdir(p))
    created = []
    real_create = fsutil.SafeDir.create_temp

    def create_temp(self: fsutil.SafeDir, key: str, executable: bool) -> tuple[int, int, str]:
        created.append(key)
        return real_create(self, key, executable)

    monkeypatch.setattr(fsutil.SafeDir, "create_temp", create_temp)
    _empty_and_checkout(repo, files)
    assert sorted(created) == sorted(files)


def test_a_file_in_the_way_is_replaced_through_a_rename(repo: Repo) -> None:
    files = _files(12)
    _commit_package(repo, files)
    old = dict(files)
    # version 2 changes two files; the work tree keeps version 1, whose bytes are cached
    files["d1/f01.bin"] = b"changed"
    files["run.sh"] = b"#!/bin/sh\necho v2\n"
    for rel in ("d1/f01.bin", "run.sh"):
        repo.write(f"data/{rel}", files[rel])
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "v2")
    repo.git("checkout", "-q", "HEAD~1", "--", "data.quilt")
    _checkout(repo)
    assert _tree(repo.root / "data") == old
    repo.git("checkout", "-q", "HEAD", "--", "data.quilt")
    _checkout(repo)
    _assert_hydrated(repo, files)


def test_units_of_work_stay_in_one_directory_and_alternate() -> None:
    keys = [f"d{i % 3}/f{i:03d}" for i in range(300)] + ["big", "x/y"]
    sizes = [10] * 300 + [co.CHUNK_BYTES, 5]
    chunks = co._chunks(list(range(302)), sizes, keys)
    assert sorted(i for c in chunks for i in c) == list(range(302))  # each file once
    dirs = [{keys[i].rpartition("/")[0] for i in c} for c in chunks]
    assert all(len(d) == 1 for d in dirs)  # one directory per unit
    assert all(len(c) <= co.CHUNK_FILES for c in chunks)
    assert [c for c in chunks if 300 in c] == [[300]]  # a large file alone
    firsts = [d.pop() for d in dirs[:3]]
    assert len(set(firsts)) == 3  # the threads start in different directories
