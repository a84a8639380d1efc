"""Hashing and storing many files: grouped work units, one-call reads, numbered temp
files, claims made outside the lock, parallel directory fsyncs."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import threading
from pathlib import Path

import pytest

from gitquilt import fsutil
from gitquilt import store as store_mod
from gitquilt.ops import scan as scan_mod
from gitquilt.ops.scan import FileState, fill_hashes, scan_package
from gitquilt.ops.workspace import Workspace
from gitquilt.store import Store, StoreError
from tests.conftest import Repo

OLD_NS = 1_600_000_000 * 10**9  # an mtime far in the past: never "racily clean"


def _state(key: str, size: int) -> FileState:
    return FileState(key, f"/x/{key}", size, 0, 0, False)


def test_chunks_group_small_files_and_keep_large_ones_alone() -> None:
    files = [_state(f"s{i}", 1000) for i in range(150)] + [_state("big", 8 << 20)] + [_state("t", 10)]
    chunks = scan_mod._chunks(files)
    assert sorted(f.key for c in chunks for f in c) == sorted(f.key for f in files)  # each file once
    assert all(len(c) <= scan_mod.CHUNK_FILES for c in chunks)
    assert [["big"]] == [[f.key for f in c] for c in chunks if any(f.key == "big" for f in c)]
    bytes_chunks = scan_mod._chunks([_state(f"m{i}", 1 << 20) for i in range(9)])
    assert [len(c) for c in bytes_chunks] == [4, 4, 1]  # 4 MiB a unit


@pytest.mark.parametrize("actual", [b"", b"abc", b"x" * 5000])
def test_hash_file_reads_to_the_end_whatever_the_scan_saw(tmp_path: Path, actual: bytes) -> None:
    p = tmp_path / "f"
    p.write_bytes(actual)
    for hint in (0, 3, 4, 4999, 5000, 5001):  # the file changed since the scan
        assert scan_mod._hash_file(str(p), hint) == (hashlib.sha256(actual).hexdigest(), len(actual))


@pytest.mark.parametrize("actual", [b"", b"abc", b"y" * 70_000])
def test_read_small_reads_to_the_end_whatever_fstat_said(tmp_path: Path, actual: bytes) -> None:
    p = tmp_path / "f"
    p.write_bytes(actual)
    fd = os.open(p, os.O_RDONLY)
    try:
        for hint in (0, 2, 3, 69_999, 70_000, 70_001):
            os.lseek(fd, 0, os.SEEK_SET)
            assert store_mod._read_small(fd, hint) == actual
    finally:
        os.close(fd)


def _tree(root: Path, n: int) -> dict[str, bytes]:
    files = {f"d{i % 3}/f{i:03d}.bin": os.urandom(100 + i) for i in range(n)}
    files["big.bin"] = os.urandom((1 << 20) + 17)  # streamed, not read in one call
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, ns=(OLD_NS, OLD_NS))
    return files


@pytest.mark.parametrize("store_it", [False, True])
def test_fill_hashes_many_files_hashes_stores_and_remembers(repo: Repo, store_it: bool) -> None:
    files = _tree(repo.root / "data", 200)
    ws = Workspace.open(repo.root)
    try:
        ref = ws.package_ref(repo.root / "data")
        scan = scan_package(ws, ref)
        started = []
        if store_it:
            with ws.cache.batch() as batch:
                fill_hashes(ws, scan, batch=batch, before_hashing=lambda: started.append(1))
        else:
            fill_hashes(ws, scan, before_hashing=lambda: started.append(1))
        assert started == [1]
        for rel, data in files.items():
            digest = hashlib.sha256(data).hexdigest()
            assert scan.files[rel].sha256 == digest and scan.files[rel].size == len(data)
            assert ws.cache.has(digest) == store_it
            if store_it:
                assert ws.cache.object_path(digest).read_bytes() == data
        known = ws.statcache.lookup_dir(str(repo.root / "data"))
        assert len(known) == len(files)
        # everything vouched for now: nothing is read, and the callback is not called
        again = scan_package(ws, ref)
        fill_hashes(ws, again, before_hashing=lambda: started.append(2))
        assert started == [1] and {k: f.sha256 for k, f in again.files.items()} == {
            k: f.sha256 for k, f in scan.files.items()
        }
    finally:
        ws.close()
    assert fsutil.tmp_owner_pid(".frag.123.0000abcd.tmp") == 123  # the shape the batch's names use
    assert os.listdir(ws.cache.tmp) == []


def test_temp_names_skip_a_dead_writers_leftover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "USE_ANONYMOUS_TMP", False)  # named temporary files
    store = Store(tmp_path / "cache").ensure()
    monkeypatch.setattr(store_mod, "_TMP_IDS", itertools.count(0x1234))
    leftover = store.tmp / f".frag.{os.getpid()}.00001234.tmp"
    leftover.write_bytes(b"old")
    with store.batch() as b:
        digest = b.put_bytes(b"new bytes")
    assert store.object_path(digest).read_bytes() == b"new bytes"
    assert leftover.read_bytes() == b"old"  # untouched, and not taken for ours
    assert fsutil.tmp_owner_pid(leftover.name) == os.getpid()


def test_same_bytes_from_many_threads_are_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "cache").ensure()
    opened = []
    real = store_mod.WriteBatch._new_tmp

    def counting(self: store_mod.WriteBatch) -> tuple[str | None, int]:
        opened.append(1)
        return real(self)

    monkeypatch.setattr(store_mod.WriteBatch, "_new_tmp", counting)
    with store.batch() as b:
        threads = [threading.Thread(target=b.put_bytes, args=(b"same",)) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(opened) == 1
    assert list(store.iter_objects()) == [hashlib.sha256(b"same").hexdigest()]


def test_directory_fsync_failure_is_a_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(tmp_path / "cache").ensure()
    synced: list[str] = []

    def failing(path: str) -> None:
        synced.append(str(path))
        if str(path).endswith("/ab"):
            raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fsutil, "fsync_dir", failing)
    store_mod._fsync_dirs([f"{tmp_path}/{i:02x}" for i in range(0xc0, 0xd0)])  # no "/ab" among these names
    assert len(synced) == 16
    with pytest.raises(StoreError, match="durable"):
        store_mod._fsync_dirs([f"{tmp_path}/{i:02x}" for i in range(0xc0, 0xd0)] + [f"{tmp_path}/ab"])


def test_fill_hashes_can_leave_recording_to_the_caller_and_add_records_while_committing(repo: Repo) -> None:
    from gitquilt.ops.add import add_package

    files = _tree(repo.root / "data", 30)
    ws = Workspace.open(repo.root)
    try:
        ref = ws.package_ref(repo.root / "data")
        rows = fill_hashes(ws, scan_package(ws, ref), record=False)
        assert sorted(r[0] for r in rows) == sorted(str(repo.root / "data" / k) for k in files)
        assert ws.statcache.lookup_dir(str(repo.root / "data")) == {}  # not recorded
        add_package(ws, ref, stage=False)
        known = ws.statcache.lookup_dir(str(repo.root / "data"))
        assert {p: v[3] for p, v in known.items()} == {
            str(repo.root / "data" / k): hashlib.sha256(d).hexdigest() for k, d in files.items()
        }
    finally:
        ws.close()


def test_a_vouched_file_whose_fragment_left_the_cache_is_stored_again(repo: Repo) -> None:
    files = _tree(repo.root / "data", 40)
    ws = Workspace.open(repo.root)
    try:
        ref = ws.package_ref(repo.root / "data")
        with ws.cache.batch() as batch:
            fill_hashes(ws, scan_package(ws, ref), batch=batch)
        gone = hashlib.sha256(files["d1/f001.bin"]).hexdigest()
        ws.cache.object_path(gone).unlink()  # quarantined by verify, say
        read: list[str] = []
        with ws.cache.batch() as batch:
            real = batch.put_file_stat

            def noting(path: str | Path, size_hint: int = -1) -> tuple[str, int, os.stat_result]:
                read.append(str(path))
                return real(path, size_hint)

            batch.put_file_stat = noting  # type: ignore[method-assign, assignment]
            scan = scan_package(ws, ref)
            fill_hashes(ws, scan, batch=batch)
        assert read == [str(repo.root / "data" / "d1/f001.bin")]  # only that one was read again
        assert ws.cache.object_path(gone).read_bytes() == files["d1/f001.bin"]
        assert all(scan.files[k].sha256 == hashlib.sha256(d).hexdigest() for k, d in files.items())
    finally:
        ws.close()


def test_reads_never_follow_a_symlink_swapped_in_after_the_scan(tmp_path: Path) -> None:
    from gitquilt.ops.scan import _hash_file_stat
    from gitquilt.store import Store, StoreError

    secret = tmp_path / "secret"
    secret.write_bytes(b"outside the package" * 10_000)
    link = tmp_path / "pkg-file"
    link.symlink_to(secret)
    for hint in (10, 1 << 30):  # the small-file and the streaming path
        with pytest.raises(OSError) as exc:
            _hash_file_stat(str(link), hint)
        assert exc.value.errno == errno.ELOOP
    store = Store(tmp_path / "cache").ensure()
    with store.batch() as batch, pytest.raises(StoreError, match="cannot store"):
        batch.put_file_stat(str(link), 10)
    assert list(store.iter_objects()) == []
