"""gitquilt.packs: keys, the index value, building packs (sizes, order, threshold, bounded memory), listings."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from gitquilt import fsutil
from gitquilt.errors import FormatError, IntegrityError, NotFound, QuiltError, UsageError
from gitquilt.packs import (
    DEFAULT_TARGET_SIZE,
    DEFAULT_THRESHOLD,
    BuiltPack,
    Opener,
    PackEntry,
    PackIndex,
    PackWriter,
    build_packs,
    bytes_opener,
    index_key,
    is_packable,
    pack_key,
    parse_pack_key,
    partition_by_size,
    survey_listing,
)
from gitquilt.store import Store

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def frag(i: int, size: int) -> bytes:
    """Deterministic, distinct fragment bytes."""
    seed = hashlib.sha256(f"{i}:{size}".encode()).digest()
    return (seed * (size // 32 + 1))[:size]


def sources(blobs: list[bytes]) -> list[tuple[str, int, Opener]]:
    return [(sha(b), len(b), bytes_opener(b)) for b in blobs]


def leftovers(tmp: Path, packs: list[BuiltPack]) -> set[str]:
    return set(os.listdir(tmp)) - {p.path.name for p in packs}


# -- keys -------------------------------------------------------------------------------------
def test_keys_round_trip_and_refuse_strays() -> None:
    pid = sha(b"pack")
    assert pack_key(pid) == f"packs/{pid}.pack" and index_key(pid) == f"packs/{pid}.idx"
    assert parse_pack_key(pack_key(pid)) == ("pack", pid)
    assert parse_pack_key(index_key(pid)) == ("index", pid)
    for bad in (f"packs/{pid}.tmp", f"packs/{pid.upper()}.pack", f"packs/x{pid}.idx", f"objects/{pid}.pack",
                "packs/.pack", f"packs/sub/{pid}.pack", f"packs/{pid[:63]}.idx"):
        assert parse_pack_key(bad) is None, bad


# -- the index value ----------------------------------------------------------------------------
def _index(blobs: list[bytes]) -> PackIndex:
    rows, off = [], 0
    for b in blobs:
        rows.append((sha(b), off, len(b)))
        off += len(b)
    return PackIndex.from_entries(sha(b"".join(blobs)), off, rows)


def test_index_value_access() -> None:
    blobs = [b"a", b"bb", b"", b"dddd"]
    index = _index(blobs)
    assert len(index) == 4 and index.pack_size == 7
    assert index[1] == PackEntry(sha(b"bb"), 1, 2) and index[-1] == PackEntry(sha(b"dddd"), 3, 4)
    assert [e.sha256 for e in index] == [sha(b) for b in blobs]
    assert index.find(sha(b"")) == PackEntry(sha(b""), 3, 0)
    assert index.find(sha(b"zzz")) is None
    assert index == _index(blobs) and index != _index(blobs[:3] + [b"eeee"])
    assert "4 fragments" in repr(index)
    with pytest.raises(IndexError):
        index[4]


def test_find_ignores_matches_that_straddle_two_digests() -> None:
    index = _index([b"one", b"two"])
    straddling = (index.digests[16:48]).hex()  # last half of one digest + first half of the next
    assert index.find(straddling) is None and index.row_of(straddling) is None


@pytest.mark.parametrize(
    ("rows", "size", "needle"),
    [
        ([(sha(b"a"), 0, 1), (sha(b"a"), 1, 1)], 2, "listed twice"),
        ([(sha(b"a"), 0, -1)], 0, "negative length"),
        ([(sha(b"a"), 1, 1)], 2, "back to back"),
        ([(sha(b"a"), 0, 1), (sha(b"b"), 2, 1)], 3, "back to back"),
        ([(sha(b"a").upper(), 0, 1)], 1, "64 lowercase hex"),
        ([(sha(b"a"), 0, 1)], 5, "the pack holds 5"),
        ([], 0, "lists no fragments"),
    ],
)
def test_index_from_entries_applies_the_format_rules(rows: list[tuple[str, int, int]], size: int,
                                                      needle: str) -> None:
    with pytest.raises(FormatError) as info:
        PackIndex.from_entries(sha(b"p"), size, rows)
    assert needle in str(info.value)


# -- the threshold rule ------------------------------------------------------------------------
def test_threshold_rule() -> None:
    assert DEFAULT_THRESHOLD == MiB and DEFAULT_TARGET_SIZE == 64 * MiB
    assert is_packable(0) and is_packable(MiB - 1) and not is_packable(MiB)
    assert is_packable(10, threshold=11) and not is_packable(11, threshold=11)
    items = [("a", 10), ("b", MiB), ("c", 5), ("d", 3 * MiB), ("e", MiB - 1)]
    small, large = partition_by_size(items, lambda t: t[1])
    assert small == [("a", 10), ("c", 5), ("e", MiB - 1)] and large == [("b", MiB), ("d", 3 * MiB)]
    small, large = partition_by_size(items, lambda t: t[1], threshold=6)
    assert [k for k, _ in small] == ["c"]


# -- building -----------------------------------------------------------------------------------
def test_packs_respect_the_target_and_keep_the_order(tmp_path: Path) -> None:
    sizes = [30, 50, 20, 1, 99, 100, 250, 0, 7, 60, 40]
    blobs = [frag(i, n) for i, n in enumerate(sizes)]
    packs = list(build_packs(sources(blobs), tmp_path, target_size=100))
    # the greedy cut: close before a fragment would pass 100 bytes; 250 > target gets its own pack
    assert [p.size for p in packs] == [100, 100, 100, 250, 67, 40]
    assert b"".join(p.path.read_bytes() for p in packs) == b"".join(blobs)  # order kept
    assert [e.sha256 for p in packs for e in p.index] == [sha(b) for b in blobs]
    for p in packs:
        data = p.path.read_bytes()
        assert p.pack_id == sha(data) == p.index.pack_id and p.size == len(data) == p.index.pack_size
        assert PackIndex.from_entries(p.pack_id, p.size, list(p.index)) == p.index  # back to back, valid
        for e in p.index:
            assert sha(data[e.offset: e.offset + e.length]) == e.sha256
        assert p.key == pack_key(p.pack_id) and p.index_key == index_key(p.pack_id)
    assert leftovers(tmp_path, packs) == set()


def test_duplicates_are_packed_once_and_builds_are_deterministic(tmp_path: Path) -> None:
    blobs = [frag(i % 5, 40) for i in range(20)]
    first = list(build_packs(sources(blobs), tmp_path / "a", target_size=64))
    second = list(build_packs(sources(blobs), tmp_path / "b", target_size=64))
    assert [p.pack_id for p in first] == [p.pack_id for p in second]
    assert sum(len(p.index) for p in first) == 5
    with PackWriter(tmp_path) as w:
        one = w.add(sha(blobs[0]), 40, io.BytesIO(blobs[0]))
        w.add(sha(blobs[1]), 40, io.BytesIO(blobs[1]))
        assert w.add(sha(blobs[0]), 40, io.BytesIO(b"not read again")) == one and len(w) == 2
        assert sha(blobs[0]) in w
        built = w.finish()
    assert built.path.exists() and built.path.read_bytes() == blobs[0] + blobs[1]


def test_temporary_names_are_recognised_by_store_cleanup(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    packs = list(build_packs(sources([b"x" * 10]), store.tmp))
    name = packs[0].path.name
    assert packs[0].path.parent == store.tmp and fsutil.tmp_owner_pid(name) == os.getpid()
    packs[0].remove()
    packs[0].remove()  # absent is fine
    assert not packs[0].path.exists()


def test_wrong_bytes_are_refused_and_the_partial_pack_deleted(tmp_path: Path) -> None:
    blobs = [frag(i, 50) for i in range(4)]
    src = sources(blobs)
    src[2] = (src[2][0], 50, lambda: io.BytesIO(b"y" * 50))  # the cache file changed under us
    gen = build_packs(src, tmp_path, target_size=1000)
    with pytest.raises(IntegrityError, match=f"fragment {src[2][0]}.*expected sha256"):
        list(gen)
    assert os.listdir(tmp_path) == []


def test_short_source_is_refused(tmp_path: Path) -> None:
    with PackWriter(tmp_path) as w, pytest.raises(IntegrityError, match="expected 10 bytes, got 4"):
        w.add(sha(b"0123456789"), 10, io.BytesIO(b"0123"))
    assert os.listdir(tmp_path) == []  # __exit__ aborted the writer


def test_on_error_skips_a_bad_fragment_and_the_pack_stays_valid(tmp_path: Path) -> None:
    blobs = [frag(i, 30 + i) for i in range(6)]
    src = sources(blobs)
    src[1] = (src[1][0], src[1][1], lambda: io.BytesIO(b"z" * 31))  # wrong bytes, right length
    src[3] = (src[3][0], src[3][1], lambda: io.BytesIO(b"short"))  # cut off mid-fragment

    def missing() -> BinaryIO:
        raise NotFound("fragment gone from the cache")

    def unreadable() -> BinaryIO:
        raise PermissionError(13, "Permission denied")

    src.append((sha(b"gone"), 4, missing))
    src.append((sha(b"locked"), 6, unreadable))
    errors: list[tuple[str, QuiltError]] = []
    packs = list(build_packs(src, tmp_path, on_error=lambda d, e: errors.append((d, e))))
    assert [d for d, _ in errors] == [src[1][0], src[3][0], sha(b"gone"), sha(b"locked")]
    assert all(isinstance(e, QuiltError) for _, e in errors) and "Permission denied" in str(errors[3][1])
    (pack,) = packs
    data = pack.path.read_bytes()
    good = [blobs[i] for i in (0, 2, 4, 5)]
    assert data == b"".join(good) and pack.pack_id == sha(data)  # the hash was rewound as well
    assert [e.sha256 for e in pack.index] == [sha(b) for b in good]


def test_closing_the_generator_early_removes_the_pack_in_progress(tmp_path: Path) -> None:
    blobs = [frag(i, 60) for i in range(10)]
    gen = build_packs(sources(blobs), tmp_path, target_size=100)
    first = next(gen)
    gen.close()
    assert os.listdir(tmp_path) == [first.path.name]  # the yielded pack belongs to the caller


def test_writer_misuse(tmp_path: Path) -> None:
    w = PackWriter(tmp_path)
    with pytest.raises(ValueError, match="at least one fragment"):
        w.finish()
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="closed"):
        w.add(sha(b""), 0, io.BytesIO(b""))
    w2 = PackWriter(tmp_path)
    with pytest.raises(FormatError):
        w2.add("not-a-digest", 1, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="negative size"):
        w2.add(sha(b"x"), -1, io.BytesIO(b"x"))
    w2.abort()
    with pytest.raises(UsageError, match="positive"):
        list(build_packs([], tmp_path, target_size=0))
    assert list(build_packs([], tmp_path)) == [] and os.listdir(tmp_path) == []


def test_empty_fragment_gets_a_zero_length_row(tmp_path: Path) -> None:
    (pack,) = build_packs(sources([b"ab", b"", b"cd"]), tmp_path)
    assert list(pack.index) == [(sha(b"ab"), 0, 2), (sha(b""), 2, 0), (sha(b"cd"), 2, 2)]


def test_building_uses_bounded_memory_for_many_fragments(tmp_path: Path) -> None:
    """8,000 fragments of 8 KiB (one 64 MiB pack): memory stays far below the pack's size."""
    count, size = 8000, 8 << 10

    def lazy() -> Iterator[tuple[str, int, Opener]]:
        for i in range(count):
            b = frag(i, size)
            yield sha(b), size, bytes_opener(b)

    tracemalloc.start()
    try:
        packs = list(build_packs(lazy(), tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(packs) == 1 and packs[0].size == count * size and len(packs[0].index) == count
    assert peak < 6 * MiB, f"building a {count * size >> 20} MiB pack peaked at {peak >> 20} MiB"


# -- listings -------------------------------------------------------------------------------------
def test_survey_listing_sorts_complete_orphan_and_dangling() -> None:
    a, b, c = sha(b"a"), sha(b"b"), sha(b"c")
    listing = survey_listing([
        (pack_key(a), 100, 1.0), (index_key(a), 10, 2.0),
        (pack_key(b), 50, 3.0),  # orphan: a push killed before the index
        (index_key(c), 9),  # dangling: never written by gitquilt
        ("packs/README", 3, None), (f"packs/{a}.pack.tmp", 1, None),
    ])
    assert listing.complete == [a] and listing.orphans == [b] and listing.dangling == [c]
    assert listing.packs[a] == (100, 1.0) and listing.indexes[c] == (9, None)
    assert sorted(listing.ignored) == sorted(["packs/README", f"packs/{a}.pack.tmp"])
