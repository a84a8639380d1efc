"""Full disks and hostile sizes during local hydration (RELIABILITY.md §58, §60).

The real ENOSPC tests mount a small tmpfs (root in a container can); where mounting
is not permitted they skip with that reason, and the in-process test, which makes the
copy fail with ENOSPC halfway through a file, covers the same code path everywhere.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitquilt import fsutil
from gitquilt.errors import StoreFullError
from gitquilt.manifest import Entry, Manifest
from gitquilt.pointer import Pointer
from gitquilt.store import Store
from tests.conftest import Repo
from tests.faults.helpers import (
    assert_store_consistent,
    cache_root,
    many_files,
    read_tree,
    temp_files,
    write_tree,
)

Mount = Callable[[Path, str], None]


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """``tmpfs(dir, "size=128k")`` mounts a tmpfs there (skips if not permitted)."""
    mounted: list[Path] = []

    def mount(path: Path, opts: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=False, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); test_enospc_mid_copy_in_process covers this path")
        mounted.append(path)

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _remount(path: Path, opts: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{opts}", str(path)], check=True, capture_output=True)


def _assert_final_paths_whole(pkg: Path, files: dict[str, bytes]) -> None:
    """No zero-length or partial file at a final path; no temp file left."""
    assert temp_files(pkg) == []
    for rel, data in read_tree(pkg).items():
        assert data == files[rel], f"{rel} is partial ({len(data)} of {len(files[rel])} bytes)"


def _committed(repo: Repo, files: dict[str, bytes]) -> None:
    write_tree(repo.root / "data", files)
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    shutil.rmtree(repo.root / "data")


def test_disk_full_during_checkout_then_rerun_after_freeing_space(repo: Repo, tmpfs: Mount) -> None:
    # 100 small files pass the byte-count free-space check, but each takes a 4 KiB page
    files = many_files(100, 100)
    _committed(repo, files)
    pkg = repo.root / "data"
    tmpfs(pkg, "size=128k")
    r = repo.quilt("checkout", "data")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0] and "rerun" in lines[0], r.stderr
    written = read_tree(pkg)
    assert 0 < len(written) < len(files)
    _assert_final_paths_whole(pkg, files)

    _remount(pkg, "size=2m")  # space freed
    repo.quilt("checkout", "data", check=True)
    assert read_tree(pkg) == files
    assert repo.quilt("status", "--check").returncode == 0


def test_checkout_refuses_before_writing_when_the_disk_is_too_small(repo: Repo, tmpfs: Mount) -> None:
    files = {"big.bin": os.urandom(300_000), "small.txt": b"x"}
    _committed(repo, files)
    pkg = repo.root / "data"
    tmpfs(pkg, "size=128k")
    r = repo.quilt("checkout", "data")
    assert r.returncode == 1
    assert "nothing was written" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert os.listdir(pkg) == []


def test_cache_disk_full_during_add_then_rerun(make_repo: Callable[..., Repo], tmp_path: Path, tmpfs: Mount) -> None:
    cache = tmp_path / "cache"
    tmpfs(cache, "size=64k")
    repo = make_repo("r", env={"QUILT_CACHE_DIR": str(cache)})
    files = many_files(40, 4000)
    write_tree(repo.root / "data", files)
    r = repo.quilt("add", "data")
    assert r.returncode == 1
    assert "no space left" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (repo.root / "data.quilt").exists()
    assert_store_consistent(cache)
    _remount(cache, "size=2m")
    repo.quilt("add", "data", check=True)
    assert len(assert_store_consistent(cache)) == len(files)


def test_enospc_mid_copy_in_process(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every third copy writes part of the file, then fails with ENOSPC."""
    from gitquilt.ops.checkout import checkout
    from gitquilt.ops.workspace import Workspace

    files = many_files(30, 5000)
    _committed(repo, files)
    monkeypatch.delenv("QUILT_CACHE_DIR", raising=False)
    real_copy = fsutil.copy_fd
    calls = itertools.count()

    def failing_copy(src_fd: int, dst_fd: int, size: int, reflink: bool = True) -> bool:
        if next(calls) % 3 == 2:
            os.write(dst_fd, b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_copy(src_fd, dst_fd, size, reflink)

    monkeypatch.setattr(fsutil, "copy_fd", failing_copy)
    ws = Workspace.open(repo.root)
    try:
        ref = ws.package_ref(repo.root / "data")
        with pytest.raises(StoreFullError, match="no space left.*rerun"):
            checkout(ws, [ref])
        _assert_final_paths_whole(repo.root / "data", files)
        monkeypatch.setattr(fsutil, "copy_fd", real_copy)
        checkout(ws, [ref])
    finally:
        ws.close()
    assert read_tree(repo.root / "data") == files


# -- hostile sizes ----------------------------------------------------------------------


def _hostile(repo: Repo, entries: list[Entry]) -> None:
    """Commit a pointer ``evil.quilt`` to a crafted manifest whose fragments are cached."""
    repo.write("seed/x", b"abc")
    repo.write("seed/y", b"hello world")
    repo.quilt("add", "seed", check=True)
    manifest = Manifest.from_entries(entries, {})
    top = Store(cache_root(repo)).put_manifest(manifest)
    repo.write("evil.quilt", Pointer("evil", top, len(manifest), manifest.total_size).to_bytes())


ABC = hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(
    "entries",
    [
        [Entry("huge.bin", ABC, 2**62)],
        [Entry(f"many/{i:03d}", ABC, 2**55) for i in range(100)],  # one fragment, many huge entries
    ],
    ids=["size-2^62", "many-entries-one-fragment"],
)
def test_hostile_declared_size_refused_before_any_write(repo: Repo, entries: list[Entry]) -> None:
    _hostile(repo, entries)
    r = repo.quilt("checkout", "evil")
    assert r.returncode == 1
    assert "nothing was written" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (repo.root / "evil").exists()


def test_declared_size_disagreeing_with_fragment_is_refused(repo: Repo) -> None:
    """A manifest saying 5 bytes for an 11-byte fragment must not hydrate a truncated file."""
    _hostile(repo, [Entry("short.txt", hashlib.sha256(b"hello world").hexdigest(), 5)])
    r = repo.quilt("checkout", "evil")
    assert r.returncode == 1
    assert "manifest says 5" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (repo.root / "evil" / "short.txt").exists()
    assert temp_files(repo.root) == []
