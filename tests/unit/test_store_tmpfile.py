"""WriteBatch's temporary files: anonymous (O_TMPFILE, linked through /proc on commit)
where the file system allows, named in tmp/ otherwise, and the fallbacks between them;
put_file_stat's read of a file that changed since its scan; the objects/ listing that
replaces a stat per new fragment."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

import pytest

from gitquilt import store as store_mod
from gitquilt.digest import SMALL_FILE
from gitquilt.store import Store, StoreError

needs_tmpfile = pytest.mark.skipif(
    not getattr(os, "O_TMPFILE", 0) or not os.path.isdir("/proc/self/fd"), reason="no O_TMPFILE or /proc here"
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open_in(directory: Path) -> list[str]:
    """This process's open files that live (or lived, anonymously) in ``directory``."""
    prefix = os.path.realpath(directory) + "/"
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix):
            out.append(target)
    return out


def _put_all(store: Store, blobs: list[bytes]) -> list[str]:
    with store.batch() as b:
        return [b.put_bytes(x) for x in blobs]


def _check(store: Store, blobs: list[bytes]) -> None:
    for data in blobs:
        assert store.object_path(_sha(data)).read_bytes() == data
    assert sorted(store.iter_objects()) == sorted({_sha(x) for x in blobs})
    assert os.listdir(store.tmp) == []


@needs_tmpfile
def test_anonymous_files_are_open_until_commit_and_leave_nothing_in_tmp(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    blobs = [f"fragment {i}".encode() for i in range(20)]
    with store.batch() as b:
        for x in blobs:
            b.put_bytes(x)
        assert os.listdir(store.tmp) == []  # no names made in tmp/
        held = _open_in(store.tmp)
        assert len(held) == 20 and all(" (deleted)" in t for t in held)
        assert list(store.iter_objects()) == []  # nothing visible before the commit
    assert _open_in(store.tmp) == []
    _check(store, blobs)


@pytest.mark.parametrize("how", ["switched off", "unsupported here", "too few descriptors"])
def test_named_temporary_files_when_anonymous_ones_are_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    store = Store(tmp_path / "cache").ensure()
    if how == "switched off":
        monkeypatch.setattr(store_mod, "USE_ANONYMOUS_TMP", False)
    elif how == "unsupported here":
        monkeypatch.setitem(store_mod._anonymous_ok, str(store.tmp), False)
    else:
        monkeypatch.setattr(store_mod, "_fd_cap", store_mod.MIN_PENDING_FDS - 1)
    blobs = [f"named {i}".encode() for i in range(12)]
    with store.batch() as b:
        for x in blobs:
            b.put_bytes(x)
        names = os.listdir(store.tmp)
        assert len(names) == 12 and all(n.startswith(f".frag.{os.getpid()}.") for n in names)
        assert b._max_pending == store_mod.WriteBatch.MAX_PENDING
    _check(store, blobs)


def test_open_o_tmpfile_failing_is_told_apart_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without O_TMPFILE (EOPNOTSUPP): named files, learned on the first write."""
    store = Store(tmp_path / "cache").ensure()
    real_open = os.open

    def no_tmpfile(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_tmpfile)
    monkeypatch.delitem(store_mod._anonymous_ok, str(store.tmp), raising=False)
    blobs = [b"one", b"two", b"three"]
    _put_all(store, blobs)
    assert store_mod._anonymous_ok[str(store.tmp)] is False
    _check(store, blobs)


@needs_tmpfile
def test_linking_failure_falls_back_to_a_flushed_named_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc refuses the link after all (EXDEV, EPERM, a missing /proc): the commit copies the
    anonymous file to a named one, fsyncs it, links that; later writes are named."""
    store = Store(tmp_path / "cache", read_only_objects=True).ensure()
    calls: list[str] = []

    def refuse(fd: int, final: str) -> None:
        calls.append(final)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    real_fsync = os.fsync
    fsynced: list[int] = []

    def fsync(fd: int) -> None:
        fsynced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(store_mod, "_link_fd", refuse)
    monkeypatch.setattr(os, "fsync", fsync)
    big = os.urandom(SMALL_FILE + 12345)  # more than one pread of the copy
    blobs = [b"small", big] + [f"x{i}".encode() for i in range(10)]
    with store.batch() as b:
        for x in blobs:
            b.put_bytes(x)
        b.commit()
        assert b._anonymous is False
        b.put_bytes(b"after the fallback")
        assert len(os.listdir(store.tmp)) == 1  # named now
    assert len(calls) == len(blobs)
    _check(store, [*blobs, b"after the fallback"])
    for x in blobs:  # each copy was flushed before its link; the protection still applies
        st = os.stat(store.object_path(_sha(x)))
        assert st.st_ino in fsynced
        assert stat.S_IMODE(st.st_mode) == 0o444
    assert _open_in(store.tmp) == []


@needs_tmpfile
def test_pending_anonymous_files_are_committed_at_the_descriptor_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod, "_fd_cap", 5)
    monkeypatch.setattr(store_mod, "MIN_PENDING_FDS", 5)
    store = Store(tmp_path / "cache").ensure()
    blobs = [f"capped {i}".encode() for i in range(23)]
    most = 0
    with store.batch() as b:
        for x in blobs:
            b.put_bytes(x)
            most = max(most, len(_open_in(store.tmp)))
        assert b._anonymous and b._max_pending == 5
    assert most <= 5
    _check(store, blobs)


def test_fd_cap_raises_the_soft_limit_towards_the_hard_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(store_mod, "_fd_cap", None)
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (1024, 8192))
    monkeypatch.setattr(resource, "setrlimit", lambda _r, lim: set_to.append(lim))
    assert store_mod._pending_fd_cap() == (8192 - 512) // 2
    assert set_to == [(8192, 8192)]
    monkeypatch.setattr(store_mod, "_fd_cap", None)
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (1024, 1024))  # cannot raise: named files
    assert store_mod._pending_fd_cap() < store_mod.MIN_PENDING_FDS


@needs_tmpfile
@pytest.mark.parametrize("anonymous", [True, False])
def test_an_error_inside_the_batch_releases_every_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous: bool
) -> None:
    monkeypatch.setattr(store_mod, "USE_ANONYMOUS_TMP", anonymous)
    store = Store(tmp_path / "cache").ensure()
    store_mod._proc_fd()  # opened once, kept for the process
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(RuntimeError), store.batch() as b:
        for i in range(10):
            b.put_bytes(f"doomed {i}".encode())
        raise RuntimeError("interrupted")
    assert len(os.listdir("/proc/self/fd")) == before
    assert os.listdir(store.tmp) == [] and list(store.iter_objects()) == []
    with pytest.raises(StoreError, match="aborted"):
        b.put_bytes(b"too late")


@needs_tmpfile
def test_a_failing_link_midway_releases_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "cache").ensure()
    real = store_mod._link_fd
    linked: list[str] = []

    def flaky(fd: int, final: str) -> None:
        if len(linked) == 4:
            raise KeyboardInterrupt
        real(fd, final)
        linked.append(final)

    monkeypatch.setattr(store_mod, "_link_fd", flaky)
    store_mod._proc_fd()  # opened once, kept for the process
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyboardInterrupt), store.batch() as b:
        for i in range(12):
            b.put_bytes(f"part {i}".encode())
    assert len(os.listdir("/proc/self/fd")) == before  # each descriptor closed once
    assert len(list(store.iter_objects())) == 4 and os.listdir(store.tmp) == []
    for digest in store.iter_objects():
        assert _sha(store.object_path(digest).read_bytes()) == digest


@pytest.mark.parametrize("actual_size", [0, 10, 4000, 4095, 4097, SMALL_FILE + 1, 3 * SMALL_FILE])
def test_put_file_stat_reads_the_file_as_it_is_whatever_the_hint(tmp_path: Path, actual_size: int) -> None:
    store = Store(tmp_path / "cache").ensure()
    p = tmp_path / "f"
    data = os.urandom(actual_size)
    p.write_bytes(data)
    for hint in (-1, 0, 4096, actual_size, SMALL_FILE, SMALL_FILE + 5):
        with store.batch() as b:
            digest, size, st = b.put_file_stat(p, hint)
        assert (digest, size) == (_sha(data), actual_size)
        assert (st.st_size, st.st_ino, st.st_mtime_ns) == (p.stat().st_size, p.stat().st_ino, p.stat().st_mtime_ns)
        assert store.object_path(digest).read_bytes() == data


def test_put_file_stat_reports_the_open_files_stat_after_reading(tmp_path: Path) -> None:
    """The stat describes the file that was read, even if the name now points elsewhere."""
    store = Store(tmp_path / "cache").ensure()
    p = tmp_path / "f"
    p.write_bytes(b"v1")
    ino = p.stat().st_ino
    real_read = os.read

    def read_then_replace(fd: int, n: int) -> bytes:
        out = real_read(fd, n)
        if not (tmp_path / "g").exists():
            (tmp_path / "g").write_bytes(b"v2 longer")
            os.replace(tmp_path / "g", p)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "read", read_then_replace)
        with store.batch() as b:
            digest, size, st = b.put_file_stat(p, 2)
    assert (digest, size, st.st_ino) == (_sha(b"v1"), 2, ino)
    assert p.stat().st_ino != ino


def test_absent_fanout_directory_means_absent_without_a_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "cache").ensure()
    stored = store.put_bytes(b"already here")
    stats: list[str] = []
    real_exists = os.path.exists

    def counting(path):  # type: ignore[no-untyped-def]
        if os.path.dirname(os.path.dirname(path)) == str(store.objects):  # a fragment's path
            stats.append(str(path))
        return real_exists(path)

    monkeypatch.setattr(os.path, "exists", counting)
    blobs = [f"new {i}".encode() for i in range(50)]
    with store.batch() as b:
        assert b.put_bytes(b"already here") == stored  # its directory exists: checked, not rewritten
        for x in blobs:
            b.put_bytes(x)
    same_dir = sum(1 for x in blobs if _sha(x)[:2] == stored[:2])
    assert len(stats) == 1 + same_dir
    _check(store, [b"already here", *blobs])


def test_a_fragment_stored_by_another_writer_after_the_listing_is_kept_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    other = Store(tmp_path / "cache")
    data = b"raced"
    with store.batch() as b:
        b.put_bytes(b"lists objects/ now")
        other.put_bytes(data)  # another process, after the listing
        b.put_bytes(data)  # written again (its directory looked absent), linked nowhere
    _check(store, [b"lists objects/ now", data])


def test_commit_naming_many_directories_flushes_them_with_one_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitquilt import fsutil

    calls: list[str] = []
    real_link, real_syncfs = store_mod._link_fd, fsutil.syncfs

    def link(fd: int, final: str) -> None:
        calls.append("link")
        real_link(fd, final)

    def syncfs(path: str) -> None:
        calls.append("syncfs")
        real_syncfs(path)

    monkeypatch.setattr(store_mod, "_link_fd", link)
    monkeypatch.setattr(fsutil, "syncfs", syncfs)
    monkeypatch.setattr(fsutil, "fsync_dir", lambda path: calls.append("fsync-dir"))
    store = Store(tmp_path / "cache").ensure()
    blobs = [f"spread {i}".encode() for i in range(100)]
    _put_all(store, blobs)
    assert len({_sha(x)[:2] for x in blobs}) > store_mod.SYNCFS_DIRS
    first, last = calls.index("link"), len(calls) - 1 - calls[::-1].index("link")
    assert calls[:first] == ["syncfs"]  # the data, before any name
    assert calls[last + 1:] == ["syncfs"] and "fsync-dir" not in calls  # the names, after the last
    _check(store, blobs)


@pytest.mark.parametrize("anonymous", [True, False])
def test_background_commits_keep_sync_before_names_and_finish_before_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous: bool
) -> None:
    import threading

    from gitquilt import fsutil

    monkeypatch.setattr(store_mod, "USE_ANONYMOUS_TMP", anonymous)
    monkeypatch.setattr(store_mod.WriteBatch, "BACKGROUND_FILES", 7)
    calls: list[tuple[str, str]] = []  # (operation, thread name)
    real_syncfs, real_fsync_file, real_link = fsutil.syncfs, fsutil.fsync_file, os.link

    def note(op: str) -> None:
        calls.append((op, threading.current_thread().name))

    real_fsync = os.fsync

    def noting(op: str, real):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            if op == "sync":
                note(op)
            real(*args, **kwargs)
            if op == "link":  # noted if it worked
                note(op)
        return wrapper

    monkeypatch.setattr(fsutil, "syncfs", noting("sync", real_syncfs))
    monkeypatch.setattr(fsutil, "fsync_file", noting("sync", real_fsync_file))
    monkeypatch.setattr(os, "fsync", noting("sync", real_fsync))  # an anonymous file's own
    monkeypatch.setattr(os, "link", noting("link", real_link))  # anonymous files are linked through it too
    store = Store(tmp_path / "cache").ensure()
    blobs = [f"behind {i}".encode() for i in range(40)]
    with store.batch() as b:
        for x in blobs:
            b.put_bytes(x)
    assert b._background is None
    _check(store, blobs)  # every name is in place when the batch returns
    behind = [op for op, thread in calls if thread == "gitquilt-commit"]
    assert behind.count("link") >= 7  # one background commit at least (the next waits for it to end)
    for thread in {t for _op, t in calls}:
        ops = [op for op, t in calls if t == thread]
        if "link" in ops:  # in each thread, data is synced before the first name of each commit
            assert ops[0] == "sync"
    assert [op for op, _t in calls].count("link") == len(blobs)


@needs_tmpfile
def test_a_background_commit_failure_stops_the_writers_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod.WriteBatch, "BACKGROUND_FILES", 5)

    def full(fd: int, final: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "_link_fd", full)
    monkeypatch.setattr(store_mod.WriteBatch, "_link_by_copy", lambda self, *a: full(0, ""))
    store = Store(tmp_path / "cache").ensure()
    store_mod._proc_fd()
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(StoreError, match="no space left"), store.batch() as b:
        for i in range(200):
            b.put_bytes(f"doomed {i}".encode())
            b._wait_background()
    assert len(os.listdir("/proc/self/fd")) == before
    assert os.listdir(store.tmp) == [] and list(store.iter_objects()) == []


@pytest.mark.parametrize("list_bytes", [0, 1 << 30])  # always a stat per name / always a listing
def test_stored_tells_which_digests_are_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, list_bytes: int) -> None:
    monkeypatch.setattr(store_mod, "LIST_BYTES_PER_ASKED", list_bytes)
    store = Store(tmp_path / "cache").ensure()
    held = [store.put_bytes(f"held {i}".encode()) for i in range(60)]
    absent = [_sha(f"absent {i}".encode()) for i in range(60)]
    (store.objects / held[0][:2] / held[0][2:]).unlink()  # gone since
    with store.batch() as b:
        assert b.stored(held + absent) == set(held[1:])
        assert b.stored([]) == set()


def test_a_fresh_cache_costs_no_stat_per_fragment_even_after_background_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod.WriteBatch, "BACKGROUND_FILES", 5)
    store = Store(tmp_path / "cache").ensure()
    asked: list[str] = []
    real_exists = os.path.exists

    def counting(path):  # type: ignore[no-untyped-def]
        if os.path.dirname(os.path.dirname(path)) == str(store.objects):
            asked.append(str(path))
        return real_exists(path)

    monkeypatch.setattr(os.path, "exists", counting)
    blobs = [f"fresh {i}".encode() for i in range(60)]
    with store.batch() as b:
        for x in blobs:
            b.put_bytes(x)
            b._wait_background()  # its directories exist from here on
        assert b.put_bytes(blobs[0]) == _sha(blobs[0])  # a repeat: known from the claims
    assert asked == []
    _check(store, blobs)
