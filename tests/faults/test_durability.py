"""Write ordering for power loss (RELIABILITY.md §28).

``os.fsync``, ``fsutil.syncfs``, ``os.link`` and ``os.replace`` are wrapped to record
the order of calls: file data must be flushed before it is linked or renamed under its
final name, and the directory that gained the name is fsynced after. A fragment must be
durable before the manifest naming it, and the manifest before the pointer.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gitquilt import fsutil
from gitquilt.store import Store
from tests.conftest import Repo


@dataclass
class Call:
    op: str  # fsync-file, fsync-dir, syncfs, link, replace
    ino: int = 0  # fsynced inode, or the inode being linked/renamed
    dir_ino: int = 0  # for link/replace: the directory that gains the name
    path: str = ""


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)

    def index(self, pred) -> list[int]:  # type: ignore[no-untyped-def]
        return [i for i, c in enumerate(self.calls) if pred(c)]

    def names(self, suffix: str = "") -> list[tuple[int, Call]]:
        return [(i, c) for i, c in enumerate(self.calls) if c.op in ("link", "replace") and c.path.endswith(suffix)]

    def assert_dir_synced_after(self, i: int) -> None:
        c = self.calls[i]
        # syncfs flushes every directory of the file system (a batch naming many at once)
        later = [d for d in self.calls[i + 1:] if (d.op == "fsync-dir" and d.ino == c.dir_ino) or d.op == "syncfs"]
        assert later, f"directory of {c.path} was not fsynced after the {c.op}"

    def assert_data_flushed_before(self, i: int) -> None:
        c = self.calls[i]
        before = self.calls[:i]
        assert any(b.op == "syncfs" for b in before) or any(
            b.op == "fsync-file" and b.ino == c.ino for b in before
        ), f"{c.path} was {c.op}ed before its data was flushed"


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    r = Recorder()
    real_fsync, real_link, real_replace, real_syncfs = os.fsync, os.link, os.replace, fsutil.syncfs

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        r.calls.append(Call("fsync-dir" if stat.S_ISDIR(st.st_mode) else "fsync-file", st.st_ino))
        real_fsync(fd)

    def named(op: str, real):  # type: ignore[no-untyped-def]
        def wrapper(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
            ino = os.stat(src, dir_fd=kwargs.get("src_dir_fd")).st_ino
            real(src, dst, *args, **kwargs)
            dir_ino = os.stat(os.path.dirname(os.fspath(dst)) or ".", dir_fd=kwargs.get("dst_dir_fd")).st_ino
            r.calls.append(Call(op, ino, dir_ino, os.fspath(dst)))
        return wrapper

    def syncfs(path) -> None:  # type: ignore[no-untyped-def]
        r.calls.append(Call("syncfs", path=str(path)))
        real_syncfs(path)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", named("link", real_link))
    monkeypatch.setattr(os, "replace", named("replace", real_replace))
    monkeypatch.setattr(fsutil, "syncfs", syncfs)
    return r


def _fill(store: Store, tmp_path: Path) -> list[str]:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20) + b"tail")  # above SMALL_FILE: streamed copy
    stream_data = b"streamed fragment"
    import hashlib

    with store.batch() as b:
        d1 = b.put_bytes(b"small fragment")
        d2, _ = b.put_file(big)
        d3 = b.put_stream(io.BytesIO(stream_data), hashlib.sha256(stream_data).hexdigest(), len(stream_data))
    return [d1, d2, d3]


@pytest.mark.parametrize("mode", ["batch", "always"])
def test_store_batch_flushes_before_linking_and_syncs_dirs_after(rec: Recorder, tmp_path: Path, mode: str) -> None:
    store = Store(tmp_path / "cache", fsync=mode)
    digests = _fill(store, tmp_path)
    links = rec.names()
    assert sorted(Path(c.path).parent.name + Path(c.path).name for _i, c in links) == sorted(digests)
    for i, c in links:
        assert c.op == "link"
        rec.assert_data_flushed_before(i)
        rec.assert_dir_synced_after(i)
        if mode == "always":  # per-file fsync of that very file
            assert any(b.op == "fsync-file" and b.ino == c.ino for b in rec.calls[:i])
    # the new objects/sha256/xx directories were made durable in their parent
    objects_ino = (tmp_path / "cache" / "objects" / "sha256").stat().st_ino
    assert any(c.op == "fsync-dir" and c.ino == objects_ino for c in rec.calls[links[0][0]:])
    assert all(store.has(d) for d in digests)


def test_large_batch_uses_one_syncfs_before_any_link(rec: Recorder, tmp_path: Path) -> None:
    from gitquilt.store import SMALL_BATCH

    store = Store(tmp_path / "cache", fsync="batch")
    with store.batch() as b:
        for i in range(SMALL_BATCH + 5):
            b.put_bytes(f"fragment {i}".encode())
    links = rec.names()
    assert len(links) == SMALL_BATCH + 5
    first_link = links[0][0]
    assert [c.op for c in rec.calls[:first_link]].count("syncfs") == 1
    assert not any(c.op == "fsync-file" for c in rec.calls)  # one flush for the whole batch
    for i, _c in links:
        rec.assert_dir_synced_after(i)


def test_atomic_write_bytes_order(rec: Recorder, tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    fsutil.atomic_write_bytes(target, b"content")
    [(i, c)] = rec.names()
    assert c.op == "replace" and c.path == str(target)
    assert [x.op for x in rec.calls] == ["fsync-file", "replace", "fsync-dir"]
    assert rec.calls[0].ino == c.ino  # the file renamed is the file flushed
    rec.assert_dir_synced_after(i)
    assert target.read_bytes() == b"content"


def test_add_makes_fragments_durable_before_manifest_before_pointer(
    rec: Recorder, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitquilt.ops.add import add_package
    from gitquilt.ops.workspace import Workspace

    monkeypatch.delenv("QUILT_CACHE_DIR", raising=False)
    for i in range(20):
        repo.write(f"data/f{i}.txt", f"file {i}\n" * (i + 1))
    ws = Workspace.open(repo.root)
    try:
        rec.calls.clear()
        add_package(ws, ws.package_ref(repo.root / "data"), stage=False)
    finally:
        ws.close()
    frag_links = [i for i, c in rec.names() if "/objects/sha256/" in c.path]
    [(m, _)] = rec.names(".parquet")
    [(p, _)] = rec.names("data.quilt")
    assert len(frag_links) == 20
    for i in frag_links:
        rec.assert_data_flushed_before(i)
        rec.assert_dir_synced_after(i)
    last_frag_dir_sync = max(
        j for j, c in enumerate(rec.calls)
        if c.op == "syncfs" or (c.op == "fsync-dir" and any(c.ino == rec.calls[i].dir_ino for i in frag_links))
    )
    assert last_frag_dir_sync > max(frag_links)
    assert last_frag_dir_sync < m, "manifest written before its fragments were durable"
    rec.assert_data_flushed_before(m)
    rec.assert_dir_synced_after(m)
    manifest_dir_sync = min(j for j in range(m + 1, len(rec.calls)) if rec.calls[j].op == "fsync-dir" and rec.calls[j].ino == rec.calls[m].dir_ino)
    assert manifest_dir_sync < p, "pointer written before the manifest was durable"
    rec.assert_data_flushed_before(p)
    rec.assert_dir_synced_after(p)


@pytest.mark.parametrize("count", [20, 41])  # the background commits take all / the final commit has some
def test_background_commits_leave_their_names_to_a_later_sync_before_the_batch_ends(
    rec: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    import hashlib
    import threading

    from gitquilt import store as store_mod

    monkeypatch.setattr(store_mod.WriteBatch, "BACKGROUND_FILES", 10)  # above SMALL_BATCH: each syncfs
    store = Store(tmp_path / "cache", fsync="batch")
    threads: list[str] = []
    real_link = os.link

    def link(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_link(*args, **kwargs)
        threads.append(threading.current_thread().name)

    monkeypatch.setattr(os, "link", link)
    with store.batch() as b:
        for i in range(count):
            b.put_bytes(f"deferred {i}".encode())
            b._wait_background()  # one background commit per ten fragments
    links = rec.names()
    assert len(links) == count and threads.count("gitquilt-commit") == (count // 10) * 10
    syncs = rec.index(lambda c: c.op == "syncfs")
    # one syncfs per background commit, before its links (its names wait for the next
    # one); the final commit fsyncs the few directories still owed
    assert len(syncs) == count // 10
    last_background_link = links[(count // 10) * 10 - 1][0]
    assert not rec.index(lambda c: c.op == "fsync-dir")[0] < last_background_link  # no names sync of their own
    for i, _c in links:
        rec.assert_data_flushed_before(i)
        rec.assert_dir_synced_after(i)  # by a later commit's syncfs or the final one
    assert rec.calls[-1].op in ("syncfs", "fsync-dir")  # nothing named after the last sync
    assert all(store.has(hashlib.sha256(f"deferred {i}".encode()).hexdigest()) for i in range(count))
