"""Concurrent processes on one shared cache or one repository (RELIABILITY.md §31, §36)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Repo
from tests.faults.helpers import (
    WAIT_LIMIT,
    assert_store_consistent,
    many_files,
    read_tree,
    spawn,
    write_tree,
)


def _finish(*procs: subprocess.Popen[str]) -> None:
    for p in procs:
        out, err = p.communicate(timeout=WAIT_LIMIT)
        assert p.returncode == 0, f"exit {p.returncode}\nstdout: {out}\nstderr: {err}"


def test_two_adds_of_identical_data_into_one_shared_cache(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    shared = tmp_path / "shared-cache"
    env = {"QUILT_CACHE_DIR": str(shared)}
    a, b = make_repo("a", env=env), make_repo("b", env=env)
    files = many_files(300, 2048)
    files["big/one.bin"] = bytes(range(256)) * (6 * 4096 + 1)  # > 1 MiB: the streaming path
    files["big/two.bin"] = b"\0" * (3 << 20)
    files["dup/same1.bin"] = files["dup/same2.bin"] = b"same bytes in two files"
    for r in (a, b):
        write_tree(r.root / "data", files)
    procs = [spawn(a, "add", "data"), spawn(b, "add", "data")]
    _finish(*procs)
    assert a.read("data.quilt") == b.read("data.quilt")
    objects = assert_store_consistent(shared)
    assert len(objects) == len(set(files.values()))  # each fragment stored once
    assert not (a.root / ".git" / "quilt" / "objects").exists()  # the shared cache was used
    # either repo restores the package from the shared cache
    shutil.rmtree(b.root / "data")
    b.quilt("checkout", "data", check=True)
    assert read_tree(b.root / "data") == files


def test_two_worktrees_check_out_different_revisions_at_once(repo: Repo) -> None:
    v1 = many_files(200, 3000, tag="v1")
    write_tree(repo.root / "data", v1)
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "v1")
    repo.git("tag", "v1")
    v2 = many_files(200, 3000, tag="v2")
    v2.pop("d0/f00000.bin")
    v2["new/only-in-v2.txt"] = b"new"
    shutil.rmtree(repo.root / "data")
    write_tree(repo.root / "data", v2)
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "v2")
    shutil.rmtree(repo.root / "data")

    wt_root = repo.root.parent / "wt"
    repo.git("worktree", "add", "-q", str(wt_root), "v1")
    wt = Repo(wt_root, repo.env)
    # the worktree shares the cache in the git common dir, and has its own checkout lock
    _finish(spawn(repo, "checkout"), spawn(wt, "checkout"))
    assert read_tree(repo.root / "data") == v2
    assert read_tree(wt_root / "data") == v1
    assert repo.quilt("status", "--check").returncode == 0
    assert wt.quilt("status", "--check").returncode == 0
    assert not (wt_root / ".git").is_dir()  # a real linked worktree
    assert_store_consistent(repo.root / ".git" / "quilt")


def test_two_checkouts_in_one_work_tree_are_serialised(repo: Repo) -> None:
    files = many_files(200, 3000)
    write_tree(repo.root / "data", files)
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "v1")
    shutil.rmtree(repo.root / "data")
    _finish(spawn(repo, "checkout", "data"), spawn(repo, "checkout", "data"))
    assert read_tree(repo.root / "data") == files
