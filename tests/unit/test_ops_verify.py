"""gitquilt.ops.verify: every byte re-hashed, damaged objects quarantined and reported."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gitquilt.digest import hash_bytes
from gitquilt.manifest import Entry, Manifest
from gitquilt.ops.progress import NullProgress
from gitquilt.ops.verify import FRAGMENT, MANIFEST, verify_store
from gitquilt.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "cache").ensure()
    for i in range(40):
        s.put_bytes(f"fragment {i}".encode() * (i + 1))
    s.put_bytes(b"big" * 700_000)  # several hashing blocks
    s.put_manifest(Manifest.from_entries([Entry("a", hash_bytes(b"x"), 1)]))
    return s


def _flip(path: Path, at: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def test_intact_store_is_ok(store: Store) -> None:
    r = verify_store(store)
    assert r.ok and r.damaged == []
    assert (r.fragments, r.manifests) == (41, 1)
    assert r.bytes == sum(store.object_path(d).stat().st_size for d in store.iter_objects())
    assert not store.quarantine_dir.exists()


def test_flipped_bit_is_found_and_quarantined(store: Store) -> None:
    big = hash_bytes(b"big" * 700_000)
    small = hash_bytes(b"fragment 3" * 4)
    _flip(store.object_path(big), at=1_500_000)
    _flip(store.object_path(small))
    r = verify_store(store, jobs=3)
    assert not r.ok
    assert [(d.kind, d.key) for d in r.damaged] == sorted([(FRAGMENT, big), (FRAGMENT, small)])
    for d in r.damaged:
        assert "content hashes to" in d.reason
        assert d.quarantined and Path(d.quarantined).parent == store.quarantine_dir
        assert Path(d.quarantined).exists()
    assert not store.has(big) and not store.has(small)
    assert verify_store(store).ok  # what is left is intact


def test_stat_cache_and_sizes_are_not_trusted(store: Store) -> None:
    d = hash_bytes(b"fragment 0")
    p = store.object_path(d)
    st = p.stat()
    _flip(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    assert [x.key for x in verify_store(store).damaged] == [d]


def test_non_regular_fragment_is_damage(store: Store, tmp_path: Path) -> None:
    d = hash_bytes(b"fragment 1" * 2)
    p = store.object_path(d)
    p.unlink()
    (tmp_path / "elsewhere").write_bytes(b"fragment 1" * 2)
    p.symlink_to(tmp_path / "elsewhere")
    [damage] = verify_store(store).damaged
    assert (damage.key, damage.reason) == (d, "not a regular file")
    assert (tmp_path / "elsewhere").exists()  # the link was moved, not its target
    fifo = hash_bytes(b"fragment 2" * 3)
    store.object_path(fifo).unlink()
    os.mkfifo(store.object_path(fifo))  # must not hang the check
    [damage] = verify_store(store).damaged
    assert (damage.key, damage.reason) == (fifo, "not a regular file") and not store.has(fifo)


def test_damaged_and_misnamed_manifests_are_quarantined(store: Store) -> None:
    good = Manifest.from_entries([Entry("b", hash_bytes(b"y"), 1)])
    store.put_manifest(good)
    other = Manifest.from_entries([Entry("c", hash_bytes(b"z"), 1)])
    misnamed = "f" * 64
    store.manifest_path(misnamed).write_bytes(store.manifest_path(good.top_hash).read_bytes())
    truncated = other.top_hash
    store.put_manifest(other)
    data = store.manifest_path(truncated).read_bytes()
    store.manifest_path(truncated).write_bytes(data[: len(data) // 2])
    r = verify_store(store, progress=NullProgress())
    assert r.manifests == 4
    assert {d.key: d.kind for d in r.damaged} == {misnamed: MANIFEST, truncated: MANIFEST}
    assert "not to its name" in next(d.reason for d in r.damaged if d.key == misnamed)
    assert sorted(store.iter_manifests()) == sorted(
        [good.top_hash, Manifest.from_entries([Entry("a", hash_bytes(b"x"), 1)]).top_hash]
    )
    assert len(os.listdir(store.quarantine_dir)) == 2


def test_manifest_from_a_newer_gitquilt_is_skipped_not_quarantined(store: Store) -> None:
    m = Manifest.from_entries([Entry("n", hash_bytes(b"n"), 1)])
    store.put_manifest(m)
    path = store.manifest_path(m.top_hash)
    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {})
    meta[b"gitquilt.required"] = b"some-future-feature"
    pq.write_table(table.replace_schema_metadata(meta), path)
    progress = NullProgress()
    r = verify_store(store, progress=progress)
    assert r.ok and r.skipped == [m.top_hash] and path.exists()
    assert any("upgrade gitquilt" in w for w in progress.warnings)


def test_empty_or_absent_store(tmp_path: Path) -> None:
    r = verify_store(Store(tmp_path / "nothing"))
    assert r.ok and (r.fragments, r.manifests, r.bytes) == (0, 0, 0)
