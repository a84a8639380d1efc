"""The vectorised checks of Manifest.from_entries and of the Parquet reader agree with
the entry-by-entry checks they short-cut: same manifest, or the same kind of refusal."""

from __future__ import annotations

import binascii
import hashlib
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitquilt.errors import FormatError, UnsafePath
from gitquilt.keys import check_key, check_sorted_unique, parent_dirs
from gitquilt.manifest import EMPTY_META, Entry, Manifest, _all_plain, canonical_json, check_canonical_json
from gitquilt.manifest_io import read_manifest_bytes
from tests.security.hostile import hostile_manifest, sha

A = sha(b"a")


def reference_from_entries(entries: list[Entry], meta: dict[str, Any]) -> Manifest:
    """The entry-by-entry algorithm from_entries replaced (same checks, same errors)."""
    items = sorted(entries, key=lambda e: e.key.encode("utf-8", "surrogatepass"))
    keys = [check_key(e.key) for e in items]
    check_sorted_unique(keys)
    clash = set(keys) & parent_dirs(keys)
    if clash:
        raise UnsafePath(f"logical key {min(clash)!r} is both a file and a directory")
    digests = bytearray()
    sizes = array("q")
    execs = bytearray()
    metas = []
    for e in items:
        if not (isinstance(e.sha256, str) and len(e.sha256) == 64 and all(c in "0123456789abcdef" for c in e.sha256)):
            raise FormatError("bad hash")
        digests += bytes.fromhex(e.sha256)
        if not isinstance(e.size, int) or not 0 <= e.size < 1 << 63:
            raise FormatError("bad size")
        sizes.append(e.size)
        execs.append(1 if e.executable else 0)
        metas.append(e.meta if e.meta == EMPTY_META else check_canonical_json(e.meta, "meta"))
    canonical_json(meta)
    return Manifest(keys, bytes(digests), sizes, execs, metas if any(m != EMPTY_META for m in metas) else None, meta)


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        m = fn(*args)
    except (UnsafePath, FormatError) as exc:
        return ("refused", type(exc))
    return ("ok", (m.top_hash, m.keys))


SEGMENTS = st.sampled_from(["a", "b", "data", ".", "..", "", "git", ".GIT", "x:y", "C:", "a\\b", "é", "e\u0301",
                            "\n", "\x7f", " sp", "tab\t", "\ud800", "x" * 256, "dir", "ab.c", "..."])
KEYS = st.lists(SEGMENTS, min_size=1, max_size=3).map("/".join)
HASHES = st.one_of(st.just(A), st.just(sha(b"b")), st.just(A.upper()), st.just(A[:63]), st.just(A + "0"),
                   st.just("g" * 64), st.just(A[:62] + "é"), st.integers(0, 5))
SIZES = st.one_of(st.integers(0, 2**40), st.just(-1), st.just(2**63), st.just(1.5), st.just(True), st.just("7"))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS, HASHES, SIZES, st.booleans()), max_size=6))
def test_from_entries_agrees_with_the_entry_by_entry_checks(rows: list[tuple[Any, Any, Any, bool]]) -> None:
    entries = [Entry(k, h, s, x) for k, h, s, x in rows]
    assert outcome(Manifest.from_entries, entries, {}) == outcome(reference_from_entries, entries, {})


@settings(max_examples=300, deadline=None)
@given(st.lists(KEYS, min_size=1, max_size=5))
def test_all_plain_only_vouches_for_valid_keys(keys: list[str]) -> None:
    if _all_plain(keys):
        for key in keys:
            assert check_key(key) == key


@pytest.mark.parametrize("keys", [["a\nb"], ["a", ""], ["/a"], ["a/"], ["a//b"], ["a/./b"], ["a/.."], ["."],
                                  ["a:b"], ["a\\b"], ["x/.Git/y"], ["é"], ["a\x01"], ["x" * 256]])
def test_all_plain_sends_suspicious_keys_to_check_key(keys: list[str]) -> None:
    assert not _all_plain(keys)


def test_all_plain_accepts_ordinary_keys() -> None:
    assert _all_plain(["images/cat 1.jpg", "labels.csv", "x" * 255, "a/...", ".hidden/.x"])
    assert _all_plain([])


def test_from_entries_sorts_by_utf8_bytes() -> None:
    keys = ["b", "a/b", "a-b", "é", "\uffff", "z", "A"]
    m = Manifest.from_entries([Entry(k, A, 1) for k in keys])
    assert m.keys == sorted(keys, key=lambda k: k.encode("utf-8"))


def test_from_entries_names_a_non_string_key() -> None:
    with pytest.raises(UnsafePath, match="not a string"):
        Manifest.from_entries([Entry("a", A, 1), Entry(b"b", A, 1)])  # type: ignore[arg-type]


def test_from_entries_names_the_duplicate_and_the_clash() -> None:
    with pytest.raises(UnsafePath, match="duplicate logical key 'a'"):
        Manifest.from_entries([Entry("a", A, 1), Entry("a", A, 2)])
    with pytest.raises(UnsafePath, match="'a' is both a file and a directory"):
        Manifest.from_entries([Entry("a", A, 1), Entry("a/b", A, 2)])


def test_from_entries_names_the_bad_hash_and_size() -> None:
    with pytest.raises(FormatError, match="hash of 'b'"):
        Manifest.from_entries([Entry("a", A, 1), Entry("b", A.upper(), 1)])
    with pytest.raises(FormatError, match="invalid size -1 for 'b'"):
        Manifest.from_entries([Entry("a", A, 1), Entry("b", A, -1)])
    with pytest.raises(FormatError, match="invalid size"):  # was an internal OverflowError
        Manifest.from_entries([Entry("a", A, 2**63)])


def test_from_entries_checks_entry_metadata() -> None:
    m = Manifest.from_entries([Entry("a", A, 1, meta='{"k":1}'), Entry("b", A, 1)])
    assert m.entry_metas == ['{"k":1}', EMPTY_META]
    with pytest.raises(FormatError, match="canonical"):
        Manifest.from_entries([Entry("a", A, 1, meta='{"k": 1}')])


# -- the Parquet reader's digest column check -------------------------------------------------
@pytest.mark.parametrize("bad", [A.upper(), A[:63], "g" * 64, A[:63] + " "])
def test_reader_refuses_a_hash_that_is_not_64_lowercase_hex(bad: str) -> None:
    rows = [("a", A, 1, False, "{}"), ("b", bad, 1, False, "{}")]
    data, top = hostile_manifest(rows)
    with pytest.raises(FormatError, match="hash of 'b'"):
        read_manifest_bytes(data, top)


def test_reader_refuses_hashes_whose_lengths_only_add_up() -> None:
    rows = [("a", A[:63], 1, False, "{}"), ("b", A + "0", 1, False, "{}")]  # 63 + 65 hex characters
    data, top = hostile_manifest(rows)
    with pytest.raises(FormatError):
        read_manifest_bytes(data, top)


def test_reader_decodes_digests_of_many_batches() -> None:
    n = 70_000  # more than one batch of rows
    rows = [(f"k{i:06d}", hashlib.sha256(str(i).encode()).hexdigest(), i, i % 2 == 0, "{}") for i in range(n)]
    data, top = hostile_manifest(rows)
    m = read_manifest_bytes(data, top)
    assert m.raw_digests == binascii.unhexlify("".join(r[1] for r in rows))
    assert list(m.sizes) == list(range(n)) and m.executable_flags[:4] == b"\x01\x00\x01\x00"
