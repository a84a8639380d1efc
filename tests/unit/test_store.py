"""gitquilt.store: content-addressed writes that are atomic, verified and safe in parallel."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gitquilt import fsutil
from gitquilt.digest import EMPTY_SHA256, hash_bytes
from gitquilt.errors import AmbiguousPrefix, FormatError, IntegrityError, NotFound, QuiltError
from gitquilt.manifest import Entry, Manifest
from gitquilt.manifest_io import manifest_to_bytes
from gitquilt.store import Store, StoreError, encode_manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cache").ensure()


def _objects(store: Store) -> dict[str, bytes]:
    return {d: store.object_path(d).read_bytes() for d in store.iter_objects()}


def _tmp_files(store: Store) -> list[str]:
    return sorted(os.listdir(store.tmp))


def test_layout(store: Store) -> None:
    d = store.put_bytes(b"hello")
    assert d == hash_bytes(b"hello")
    assert store.object_path(d) == store.root / "objects" / "sha256" / d[:2] / d[2:]
    assert store.object_path(d).read_bytes() == b"hello"
    m = Manifest.from_entries([Entry("a", d, 5)])
    assert store.put_manifest(m) == m.top_hash
    assert store.manifest_path(m.top_hash) == store.root / "manifests" / f"{m.top_hash}.parquet"
    assert _tmp_files(store) == []


def test_empty_fragment(store: Store) -> None:
    assert store.put_bytes(b"") == EMPTY_SHA256
    assert store.object_path(EMPTY_SHA256).read_bytes() == b""
    assert store.put_stream(io.BytesIO(b""), EMPTY_SHA256, 0) == EMPTY_SHA256


def test_put_is_idempotent(store: Store) -> None:
    d = store.put_bytes(b"x")
    ino = store.object_path(d).stat().st_ino
    store.put_bytes(b"x")
    store.put_stream(io.BytesIO(b"x"), d, 1)
    assert store.object_path(d).stat().st_ino == ino  # never rewritten
    assert _objects(store) == {d: b"x"}


def test_wrong_hash_stores_nothing(store: Store, tmp_path: Path) -> None:
    other = hash_bytes(b"other")
    with pytest.raises(IntegrityError, match=f"expected sha256 {other}"):
        store.put_bytes(b"data", expected=other)
    with pytest.raises(IntegrityError, match=f"expected sha256 {other}, got {hash_bytes(b'data')} after 4 bytes"):
        store.put_stream(io.BytesIO(b"data"), other)
    big = tmp_path / "big"
    big.write_bytes(b"z" * (3 << 20))  # above SMALL_FILE: the streaming path
    with pytest.raises(IntegrityError):
        store.put_file(big, expected=other)
    with pytest.raises(IntegrityError):
        store.put_file(tmp_path / "big", expected=hash_bytes(b"nope"))
    assert _objects(store) == {}
    assert not store.has(other) and not store.has(hash_bytes(b"data"))
    assert _tmp_files(store) == []


@pytest.mark.parametrize("declared", [3, 5])
def test_wrong_size_stores_nothing(store: Store, declared: int) -> None:
    d = hash_bytes(b"data")
    with pytest.raises(IntegrityError, match="expected .* bytes"):
        store.put_stream(io.BytesIO(b"data"), d, declared)
    assert _objects(store) == {} and _tmp_files(store) == []


def test_stream_longer_than_declared_is_not_read_to_the_end(store: Store) -> None:
    class Endless(io.RawIOBase):
        read_bytes = 0

        def read(self, n: int = -1) -> bytes:
            self.read_bytes += n
            return b"\0" * n

    s = Endless()
    with pytest.raises(IntegrityError):
        store.put_stream(s, hash_bytes(b"\0" * 10), 10)  # type: ignore[arg-type]
    assert s.read_bytes <= 11
    assert _tmp_files(store) == []


def test_failing_stream_leaves_nothing(store: Store) -> None:
    class Broken(io.RawIOBase):
        def read(self, n: int = -1) -> bytes:
            raise RuntimeError("connection dropped")

    with pytest.raises(RuntimeError):
        store.put_stream(Broken(), hash_bytes(b"x"), 1)  # type: ignore[arg-type]
    assert _objects(store) == {} and _tmp_files(store) == []


def test_batch_is_invisible_until_commit_and_abort_leaves_nothing(store: Store) -> None:
    with store.batch() as b:
        d = b.put_bytes(b"pending")
        assert not store.has(d)  # nothing under the final key before commit
    assert store.object_path(d).read_bytes() == b"pending"

    with pytest.raises(RuntimeError):
        with store.batch() as b:
            d2 = b.put_bytes(b"aborted")
            raise RuntimeError("boom")
    assert not store.has(d2)
    assert _tmp_files(store) == []


def test_put_file_small_and_large(store: Store, tmp_path: Path) -> None:
    small, large = tmp_path / "s", tmp_path / "l"
    small.write_bytes(b"s" * 10)
    large.write_bytes(os.urandom(3 << 20))
    assert store.put_file(small) == (hash_bytes(b"s" * 10), 10)
    d, n = store.put_file(large, expected=hash_bytes(large.read_bytes()))
    assert n == 3 << 20 and store.object_path(d).read_bytes() == large.read_bytes()


def test_concurrent_puts_in_threads(store: Store) -> None:
    blobs = [os.urandom(100 + i) for i in range(50)]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with store.batch() as b:
                for blob in blobs:
                    b.put_bytes(blob)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _objects(store) == {hash_bytes(b): b for b in blobs}
    assert _tmp_files(store) == []


_WRITER = """
import sys, os
from pathlib import Path
from gitquilt.store import Store
store = Store(Path(sys.argv[1]))
sys.stdin.readline()  # start together
with store.batch() as b:
    for i in range(300):
        b.put_bytes(b"shared %d" % i)
        b.put_bytes(b"own %s %d" % (sys.argv[2].encode(), i))
big = Path(sys.argv[1]).parent / "big"
store.put_file(big)
"""


def test_concurrent_puts_in_processes(store: Store, tmp_path: Path) -> None:
    big = os.urandom(2 << 20)
    (tmp_path / "big").write_bytes(big)
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(store.root), str(n)], cwd=ROOT,
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in range(3)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    expected = {hash_bytes(b"shared %d" % i): b"shared %d" % i for i in range(300)}
    for n in range(3):
        expected.update({hash_bytes(b"own %d %d" % (n, i)): b"own %d %d" % (n, i) for i in range(300)})
    expected[hash_bytes(big)] = big
    assert _objects(store) == expected
    assert _tmp_files(store) == []


def test_clean_tmp_removes_dead_writers_only(store: Store) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dead_name = fsutil.tmp_name("frag").replace(f".{os.getpid()}.", f".{dead.pid}.")
    (store.tmp / dead_name).write_bytes(b"half")
    live_name = fsutil.tmp_name("frag")  # ours: a writer that is still running
    (store.tmp / live_name).write_bytes(b"in progress")
    old_live = fsutil.tmp_name("old")
    (store.tmp / old_live).write_bytes(b"stale")
    past = time.time() - 7200
    os.utime(store.tmp / old_live, (past, past))
    assert store.clean_tmp(max_age=3600) == 2
    assert _tmp_files(store) == [live_name]


def test_clean_tmp_sweeps_renamed_into_place_directories(store: Store) -> None:
    """A writer killed while renaming a manifest (or a cached pack index) into place
    leaves its temporary file beside the final names, not in tmp/."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    packs = store.root / "packs"
    packs.mkdir()
    left = []
    for d, final in ((store.manifests, "a" * 64 + ".parquet"), (packs, "b" * 64 + ".idx")):
        dead_name = fsutil.tmp_name(final).replace(f".{os.getpid()}.", f".{dead.pid}.")
        (d / dead_name).write_bytes(b"half")
        live_name = fsutil.tmp_name(final)
        (d / live_name).write_bytes(b"in progress")
        (d / final).write_bytes(b"final")
        (d / "notes.old.tmp").write_bytes(b"not ours")  # not our temporary shape: never touched
        old = d / "notes.old.tmp"
        past = time.time() - 7200
        os.utime(old, (past, past))
        left.append((d, sorted([live_name, final, "notes.old.tmp"])))
    assert store.clean_tmp(max_age=3600) == 2
    for d, names in left:
        assert sorted(os.listdir(d)) == names


def test_read_only_objects(tmp_path: Path) -> None:
    store = Store(tmp_path / "ro", read_only_objects=True).ensure()
    d = store.put_bytes(b"x")
    assert stat.S_IMODE(store.object_path(d).stat().st_mode) == 0o444


@pytest.mark.parametrize("fsync", ["always", "never", "batch"])
def test_fsync_modes_store_the_same(tmp_path: Path, fsync: str) -> None:
    store = Store(tmp_path / fsync, fsync=fsync).ensure()
    d = store.put_bytes(b"x")
    assert store.object_path(d).read_bytes() == b"x"


def test_presence_and_listing(store: Store) -> None:
    a, b = store.put_bytes(b"a"), store.put_bytes(b"b")
    (store.objects / "zz").mkdir()
    (store.objects / a[:2] / "stray").write_bytes(b"")
    (store.objects / "README").write_bytes(b"")
    assert sorted(store.iter_objects()) == sorted([a, b])
    c = hash_bytes(b"c")
    assert store.missing([a, c, c, b]) == [c]
    with store.open(a) as f:
        assert f.read() == b"a"
    with pytest.raises(NotFound, match=c):
        store.open(c)
    store.delete(a)
    store.delete(a)  # absent: no error
    assert not store.has(a)


def test_quarantine(store: Store) -> None:
    d = store.put_bytes(b"q")
    dest = store.quarantine(d)
    assert not store.has(d)
    assert dest.parent == store.root / "quarantine" and dest.name.startswith(d + ".")
    assert dest.read_bytes() == b"q"


def test_manifests(store: Store) -> None:
    m = Manifest.from_entries([Entry("a", hash_bytes(b"a"), 1)], {"message": "x"})
    top = store.put_manifest(m)
    assert store.has_manifest(top)
    assert list(store.read_manifest(top)) == list(m)
    assert store.manifest_bytes(top) == encode_manifest(m)
    (store.manifests / "junk.parquet").write_bytes(b"")
    (store.manifests / f"{top}.parquet.tmp").write_bytes(b"")
    assert list(store.iter_manifests()) == [top]
    with pytest.raises(NotFound):
        store.read_manifest("0" * 64)
    with pytest.raises(NotFound):
        store.manifest_bytes("0" * 64)


def test_manifest_under_wrong_name_is_not_stored(store: Store) -> None:
    m = Manifest.from_entries([Entry("a", hash_bytes(b"a"), 1)])
    wrong = "1" * 64
    with pytest.raises(IntegrityError, match="not to its name"):
        store.put_manifest_bytes(manifest_to_bytes(m), wrong, where="manifest from remote origin")
    with pytest.raises(FormatError, match="top hash"):
        store.put_manifest_bytes(manifest_to_bytes(m), "../../x")
    with pytest.raises(QuiltError):
        store.put_manifest_bytes(b"garbage", m.top_hash)
    assert list(store.iter_manifests()) == []
    assert os.listdir(store.manifests) == []


def test_manifest_file_damaged_in_place_is_refused(store: Store) -> None:
    m = Manifest.from_entries([Entry("a", hash_bytes(b"a"), 1)])
    top = store.put_manifest(m)
    other_manifest = Manifest.from_entries([Entry("b", hash_bytes(b"a"), 1)])
    store.manifest_path(top).write_bytes(manifest_to_bytes(other_manifest))
    # the canonical-text copy still proves the content; verify reads the Parquet file
    assert list(store.read_manifest(top)) == list(m)
    with pytest.raises(IntegrityError):
        store.read_manifest(top, parquet_only=True)
    store.manifest_text_path(top).write_bytes(other_manifest.canonical_text())
    with pytest.raises(IntegrityError):
        store.read_manifest(top)
    assert not store.manifest_text_path(top).exists()  # the foreign text copy was dropped


def test_resolve(store: Store) -> None:
    tops = ["abcdef0" + "1" * 57, "abcdef0" + "2" * 57, "1234567" + "0" * 57]
    for top in tops:  # resolution looks at names only
        (store.manifests / f"{top}.parquet").write_bytes(b"")
    assert store.resolve("1234567") == tops[2]
    assert store.resolve("ABCDEF01") == tops[0]
    assert store.resolve("f" * 64) == "f" * 64  # a full hash is taken as is
    with pytest.raises(AmbiguousPrefix) as exc:
        store.resolve("abcdef0")
    assert tops[0] in str(exc.value) and tops[1] in str(exc.value)
    with pytest.raises(NotFound):
        store.resolve("fffffff")


def test_unwritable_store_is_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match="cannot create store"):
        Store(tmp_path / "file" / "cache").ensure()


def test_missing_lists_or_stats_alike(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    held = [store.put_bytes(bytes([i])) for i in range(40)]
    absent = [hash_bytes(b"absent %d" % i) for i in range(40)]
    expected = sorted(set(absent))
    assert store.missing(held + absent) == expected
    from gitquilt import store as store_mod

    monkeypatch.setattr(store_mod, "LIST_BYTES_PER_ASKED", 0)  # a stat per name instead of listings
    assert store.missing(held + absent) == expected
    assert store.present(held + absent) == set(held)
