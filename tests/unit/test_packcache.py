"""gitquilt.packcache: the local cache of pack indexes (they never change, so each is fetched once)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gitquilt.errors import FormatError
from gitquilt.packcache import PackIndexCache, decode_index, encode_index
from gitquilt.packs import PackIndex, build_packs, bytes_opener


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_index(tmp: Path, *blobs: bytes) -> PackIndex:
    (pack,) = build_packs([(sha(b), len(b), bytes_opener(b)) for b in blobs], tmp)
    pack.remove()
    return pack.index


def test_add_load_list_remove(tmp_path: Path) -> None:
    cache = PackIndexCache(tmp_path / "cache")
    a = make_index(tmp_path, b"one", b"two")
    b = make_index(tmp_path, b"three")
    assert cache.ids() == set() and cache.load(a.pack_id) is None and cache.load_many([a.pack_id]) == {}
    cache.add(a)  # a push keeps what it uploaded
    assert cache.add_bytes(encode_index(b), b.pack_id) == b  # a fetch keeps what it downloaded
    assert cache.path(a.pack_id) == tmp_path / "cache" / "packs" / f"{a.pack_id}.idx"
    assert cache.ids() == {a.pack_id, b.pack_id} and cache.has(a.pack_id)
    other = sha(b"not cached")
    assert cache.missing([a.pack_id, other, other]) == [other]
    assert cache.load(a.pack_id) == a and cache.load_many([a.pack_id, b.pack_id, other]) == {a.pack_id: a, b.pack_id: b}
    cache.remove(a.pack_id)
    cache.remove(a.pack_id)  # absent is fine
    assert cache.ids() == {b.pack_id}
    assert [n for n in os.listdir(cache.dir) if n.endswith(".tmp")] == []  # atomic writes leave nothing


def test_hostile_download_is_refused_and_not_kept(tmp_path: Path) -> None:
    cache = PackIndexCache(tmp_path)
    a = make_index(tmp_path, b"x", b"y")
    wrong = sha(b"another pack")
    with pytest.raises(FormatError, match="not the pack it is named after"):
        cache.add_bytes(encode_index(a), wrong)
    with pytest.raises(FormatError, match="not a readable Parquet"):
        cache.add_bytes(b"junk", a.pack_id)
    assert cache.ids() == set()


def test_damaged_cached_index_is_dropped_so_it_is_fetched_again(tmp_path: Path) -> None:
    cache = PackIndexCache(tmp_path)
    a = make_index(tmp_path, b"x", b"y")
    cache.add(a)
    cache.path(a.pack_id).write_bytes(encode_index(a)[:-30])  # a torn write after a power cut
    assert cache.load(a.pack_id) is None and not cache.has(a.pack_id)
    assert cache.missing([a.pack_id]) == [a.pack_id]


def test_stray_names_are_ignored_and_bad_ids_refused(tmp_path: Path) -> None:
    cache = PackIndexCache(tmp_path, durable=True)
    a = make_index(tmp_path, b"x")
    cache.add(a)
    for stray in ("README", f"{a.pack_id}.pack", f".{a.pack_id}.idx.123.abcdef01.tmp", "ABC.idx"):
        (cache.dir / stray).write_bytes(b"?")
    assert cache.ids() == {a.pack_id}
    with pytest.raises(FormatError):
        cache.path("../../etc/passwd")


def test_encode_decode_round_trip(tmp_path: Path) -> None:
    a = make_index(tmp_path, b"p", b"", b"qq")
    assert decode_index(encode_index(a), a.pack_id) == a
