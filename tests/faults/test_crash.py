"""Crash safety and interruption of local operations (RELIABILITY.md §24, §26, §29).

Crashes are real: the installed ``git-quilt`` executable is killed with SIGKILL (or
interrupted with SIGINT) once the test sees its first writes appear on disk, so no
test hook is needed. The later crash points of ``add``, too brief to hit by polling,
are covered by building the state such a crash leaves and rerunning the command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from gitquilt import fsutil
from tests.conftest import Repo
from tests.faults.helpers import (
    assert_objects_hash_to_names,
    assert_store_consistent,
    cache_root,
    interrupt,
    kill9,
    listdir,
    many_files,
    read_tree,
    spawn,
    temp_files,
    wait_until,
    write_tree,
    writing_in,
)

N_FILES = 1000  # enough that add and checkout run for a few hundred milliseconds


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _status(repo: Repo, pkg: str) -> dict[str, object]:
    r = repo.quilt("status", "--json", pkg, check=True)
    [st] = json.loads(r.stdout)
    assert isinstance(st, dict)
    return st


def _assert_roundtrip(repo: Repo, pkg: str, files: dict[str, bytes]) -> None:
    """The package's pointer restores exactly ``files`` from the cache alone."""
    shutil.rmtree(repo.root / pkg)
    repo.quilt("checkout", pkg, check=True)
    assert read_tree(repo.root / pkg) == files
    assert _status(repo, pkg)["state"] == "clean"


# -- add ------------------------------------------------------------------------------


def _objects_linked(cache: Path) -> bool:
    return bool(listdir(cache / "objects" / "sha256"))


@pytest.mark.parametrize("point", ["fragments in tmp", "fragments linked", "named fragments in tmp"])
def test_kill9_during_add_then_rerun_completes(repo: Repo, point: str) -> None:
    files = many_files(N_FILES, 4096)
    write_tree(repo.root / "data", files)
    cache = cache_root(repo)
    # anonymous temporary files (O_TMPFILE) where the file system has them, else named ones
    proc = spawn(repo, "add", "data", env={"GITQUILT_NO_TMPFILE": "1"} if point.startswith("named") else None)
    if point.endswith("fragments in tmp"):
        wait_until(lambda: writing_in(proc, cache / "tmp"), proc, "fragments in tmp/")
    else:
        wait_until(lambda: _objects_linked(cache), proc, "fragments linked into objects/")
    kill9(proc)

    assert_objects_hash_to_names(cache)  # whatever the crash left, no key holds wrong bytes

    r = repo.quilt("add", "data")
    assert r.returncode == 0, r.stderr
    objects = assert_store_consistent(cache)  # the dead writer's temp files were cleaned
    assert len(objects) == N_FILES
    assert temp_files(repo.root) == []
    _assert_roundtrip(repo, "data", files)


def test_add_rerun_after_crash_states_left_by_later_points(repo: Repo) -> None:
    """A crash after some links, after the manifest, or while writing the pointer."""
    files = many_files(40, 3000)
    write_tree(repo.root / "data", files)
    cache = cache_root(repo)
    assert repo.quilt("add", "--no-stage", "data").returncode == 0
    pointer = repo.read("data.quilt")
    # undo the pointer and .gitignore: the crash came before them; the manifest stays
    (repo.root / "data.quilt").unlink()
    (repo.root / ".gitignore").unlink()
    # half the fragments were never linked; their temp copies are partial
    dead = _dead_pid()
    for i, digest in enumerate(sorted(set(os.listdir(cache / "objects" / "sha256")))):
        if i % 2:
            shutil.rmtree(cache / "objects" / "sha256" / digest)
    for n in range(3):
        (cache / "tmp" / f".frag.{dead}.{n:08x}.tmp").write_bytes(b"partial")
    # the pointer's temp file was half written in the work tree
    (repo.root / f".data.quilt.{dead}.0badf00d.tmp").write_bytes(b"# gitquilt pack")
    (repo.root / f"..gitignore.{dead}.0badf00d.tmp").write_bytes(b"/da")
    # a live writer's fresh temp file must survive the cleanup
    live = cache / "tmp" / f".frag.{os.getpid()}.12345678.tmp"
    live.write_bytes(b"in progress")

    r = repo.quilt("add", "data")
    assert r.returncode == 0, r.stderr
    assert repo.read("data.quilt") == pointer
    assert live.exists()
    live.unlink()
    assert len(assert_store_consistent(cache)) == len(files)
    assert temp_files(repo.root) == [], "the dead writer's temp files in the work tree were not cleaned"
    _assert_roundtrip(repo, "data", files)


def test_sigint_during_add_exits_130_and_leaves_no_temp_files(repo: Repo) -> None:
    files = many_files(N_FILES, 4096)
    write_tree(repo.root / "data", files)
    cache = cache_root(repo)
    proc = spawn(repo, "add", "data")
    wait_until(lambda: writing_in(proc, cache / "tmp"), proc, "fragments in tmp/")
    rc, _out, err = interrupt(proc, signal.SIGINT)
    assert rc == 130, err
    assert "rerun" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert listdir(cache / "tmp") == []
    assert temp_files(repo.root) == []
    assert repo.quilt("add", "data").returncode == 0
    assert_store_consistent(cache)
    _assert_roundtrip(repo, "data", files)


# -- checkout ---------------------------------------------------------------------------


def _half_hydrated(repo: Repo) -> tuple[dict[str, bytes], dict[str, tuple[int, int]], int]:
    """A committed package with every other file deleted from the work tree.

    Returns (expected files, (inode, mtime_ns) of the files left, count of entries left).
    """
    files = many_files(N_FILES, 4096)
    write_tree(repo.root / "data", files)
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    kept = {}
    for i, rel in enumerate(sorted(files)):
        p = repo.root / "data" / rel
        if i % 2:
            st = p.stat()
            kept[rel] = (st.st_ino, st.st_mtime_ns)
        else:
            p.unlink()
    return files, kept, len(kept)


def _entries(pkg: Path) -> int:
    return sum(len(listdir(pkg / d)) for d in listdir(pkg))


def _assert_final_paths_whole(pkg: Path, files: dict[str, bytes]) -> None:
    """Every file at a final path holds its full, correct bytes (temp files aside)."""
    for dirpath, _dirs, names in os.walk(pkg):
        for name in names:
            if fsutil.tmp_owner_pid(name) is not None:
                continue
            rel = (Path(dirpath) / name).relative_to(pkg).as_posix()
            assert (Path(dirpath) / name).read_bytes() == files[rel], f"{rel} is half written"


def _assert_untouched(pkg: Path, kept: dict[str, tuple[int, int]]) -> None:
    for rel, (ino, mtime) in kept.items():
        st = (pkg / rel).stat()
        assert (st.st_ino, st.st_mtime_ns) == (ino, mtime), f"{rel} was rewritten though it was right"


def test_kill9_during_checkout_then_rerun_completes(repo: Repo) -> None:
    files, kept, n_kept = _half_hydrated(repo)
    pkg = repo.root / "data"
    proc = spawn(repo, "checkout", "data")
    wait_until(lambda: _entries(pkg) > n_kept, proc, "the first hydrated file")
    kill9(proc)
    _assert_final_paths_whole(pkg, files)
    _assert_untouched(pkg, kept)

    r = repo.quilt("checkout", "data")
    assert r.returncode == 0, r.stderr
    assert read_tree(pkg) == files  # no temp file left either
    _assert_untouched(pkg, kept)
    assert _status(repo, "data")["state"] == "clean"
    assert repo.quilt("status", "--check").returncode == 0


def test_sigint_during_checkout_exits_130_and_leaves_no_temp_files(repo: Repo) -> None:
    files, kept, n_kept = _half_hydrated(repo)
    pkg = repo.root / "data"
    proc = spawn(repo, "checkout", "data")
    wait_until(lambda: _entries(pkg) > n_kept, proc, "the first hydrated file")
    rc, _out, err = interrupt(proc, signal.SIGINT)
    assert rc == 130, err
    assert "rerun" in err and "Traceback" not in err
    assert temp_files(pkg) == []
    _assert_final_paths_whole(pkg, files)
    _assert_untouched(pkg, kept)
    r = repo.quilt("checkout", "data")
    assert r.returncode == 0, r.stderr
    assert read_tree(pkg) == files
    _assert_untouched(pkg, kept)


def test_checkout_removes_leftover_temp_files_of_a_crash(repo: Repo) -> None:
    files = {"a.txt": b"a" * 100, "sub/b.txt": b"b" * 100}
    write_tree(repo.root / "data", files)
    repo.quilt("add", "data", check=True)
    dead = _dead_pid()
    (repo.root / "data" / f".a.txt.{dead}.0123abcd.tmp").write_bytes(b"aa")
    (repo.root / "data" / "sub" / f".c.txt.{dead}.0123abcd.tmp").write_bytes(b"")
    (repo.root / "data" / "a.txt").unlink()
    repo.quilt("checkout", "data", check=True)
    assert read_tree(repo.root / "data") == files


def test_user_file_that_looks_like_a_temp_name_is_versioned_not_deleted(repo: Repo) -> None:
    """``report.2024.final.tmp`` is the user's data, not a leftover of ours."""
    files = {"report.2024.final.tmp": b"mine", "x.1.2.tmp": b"also mine"}
    write_tree(repo.root / "data", files)
    r = repo.quilt("add", "data", check=True)
    assert "2 files" in r.stdout
    repo.quilt("checkout", "data", check=True)
    assert read_tree(repo.root / "data") == files


def test_checkout_of_a_single_file_package_removes_a_dead_writers_temp_file(repo: Repo) -> None:
    repo.write("model.bin", b"weights" * 100)
    repo.quilt("add", "model.bin", check=True)
    (repo.root / "model.bin").unlink()
    dead = _dead_pid()
    stale = repo.root / f".model.bin.{dead}.0123abcd.tmp"
    stale.write_bytes(b"weig")
    repo.quilt("checkout", "model.bin", check=True)
    assert repo.read("model.bin") == b"weights" * 100
    assert not stale.exists()
