"""gitquilt.manifest: entries, canonical JSON, canonical text v1, top hash, prefixes."""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitquilt.errors import AmbiguousPrefix, FormatError, NotFound, UnsafePath, UsageError
from gitquilt.keys import check_key
from gitquilt.manifest import (
    EMPTY_META,
    HEADER,
    Entry,
    Manifest,
    canonical_json,
    check_canonical_json,
    files_fingerprint,
    resolve_prefix,
)
from gitquilt.manifest_io import manifest_to_bytes, read_manifest_bytes
from tests.security.hostile import canonical_text as reference_text
from tests.security.hostile import sha

A, B, C = sha(b"a"), sha(b"b"), sha(b"c")


def test_canonical_json() -> None:
    assert canonical_json({}) == "{}"
    assert canonical_json({"b": 1, "a": [1.5, None, True, "é"]}) == '{"a":[1.5,null,true,"é"],"b":1}'
    assert canonical_json({"t": "a\tb\nc\x00"}) == '{"t":"a\\tb\\nc\\u0000"}'  # never a raw TAB or LF
    assert canonical_json({"big": 10**30, "f": 1e16}) == '{"big":1000000000000000000000000000000,"f":1e+16}'


@pytest.mark.parametrize("value", [{"x": float("nan")}, {"x": float("inf")}, {"x": object()}, {"x": b"1"},
                                   {"x": "\ud800"}, {"\udfff": 1}])
def test_canonical_json_refuses(value: Any) -> None:
    with pytest.raises(FormatError, match="not representable"):
        canonical_json(value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"b":1,"a":2}', "canonical"),
        ('{"a": 1}', "canonical"),
        ('{"a":1,"a":2}', "canonical"),
        ('{"a":"\\u00e9"}', "canonical"),
        ('{"a":"\\ud800"}', "not representable"),
        ("[1]", "JSON object"),
        ("null", "JSON object"),
        ("{", "not valid JSON"),
        ('{"a":NaN}', "not representable"),
        ("", "not valid JSON"),
    ],
)
def test_check_canonical_json_refuses(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        check_canonical_json(text, "meta of 'k'")


def test_check_canonical_json_accepts() -> None:
    assert check_canonical_json('{"a":{"b":"é"},"c":[]}', "m") == '{"a":{"b":"é"},"c":[]}'


def _m(*entries: Entry, meta: dict[str, Any] | None = None) -> Manifest:
    return Manifest.from_entries(entries, meta)


def test_canonical_text_layout() -> None:
    m = _m(Entry("b", B, 1, True), Entry("a", A, 1, False, '{"k":1}'), meta={"message": "hi"})
    assert m.canonical_text() == (
        HEADER + b'meta\t{"message":"hi"}\n' + f"a\t{A}\t1\t-\t{{\"k\":1}}\nb\t{B}\t1\tx\t{{}}\n".encode()
    )
    assert m.top_hash == hashlib.sha256(m.canonical_text()).hexdigest()
    assert m.canonical_text() == HEADER + b'meta\t{"message":"hi"}\n' + b"".join(e.canonical_line() for e in m)


def test_empty_manifest() -> None:
    m = _m()
    assert m.canonical_text() == b"gitquilt-manifest 1\nmeta\t{}\n"
    assert len(m) == 0 and m.total_size == 0 and m.digests() == set() and m.entry_metas is None


def test_order_is_utf8_bytes() -> None:
    keys = ["😀", "é", "a", "Z", "\uff61", "a b", "b/c"]
    m = _m(*(Entry(k, A, 1) for k in keys))
    # UTF-16 order (JavaScript, Java) would put U+1F600 before U+FF61
    assert m.keys == ["Z", "a", "a b", "b/c", "é", "\uff61", "😀"]


def test_top_hash_depends_on_every_field() -> None:
    base = _m(Entry("a", A, 1), meta={"message": "m"}).top_hash
    variants = [
        _m(Entry("a", A, 1), meta={"message": "n"}),
        _m(Entry("a", A, 1)),
        _m(Entry("b", A, 1), meta={"message": "m"}),
        _m(Entry("a", B, 1), meta={"message": "m"}),
        _m(Entry("a", A, 2), meta={"message": "m"}),
        _m(Entry("a", A, 1, True), meta={"message": "m"}),
        _m(Entry("a", A, 1, False, '{"x":1}'), meta={"message": "m"}),
    ]
    assert len({base} | {v.top_hash for v in variants}) == len(variants) + 1


def test_input_order_does_not_matter() -> None:
    e = [Entry("b", B, 2), Entry("a/x", A, 1), Entry("c", C, 3, True)]
    assert _m(*e).top_hash == _m(*reversed(e)).top_hash


def test_access() -> None:
    m = _m(Entry("b", B, 2, True), Entry("a", A, 1), Entry("c", A, 5, False, '{"r":1}'))
    assert m.get("b") == Entry("b", B, 2, True, EMPTY_META)
    assert m.get("zz") is None
    assert m.entry(2) == Entry("c", A, 5, False, '{"r":1}')
    assert m.sha256(0) == A
    assert m.digests() == {A, B}
    assert m.total_size == 8
    assert m.executable_flags == b"\x00\x01\x00"
    assert m.entry_metas == ["{}", "{}", '{"r":1}']
    assert m.raw_digests == bytes.fromhex(A + B + A)
    assert list(m) == [m.entry(i) for i in range(3)]


@pytest.mark.parametrize(
    "entries, error, message",
    [
        ([Entry("a", A, 1), Entry("a", B, 2)], UnsafePath, "duplicate logical key 'a'"),
        ([Entry("a", A, 1), Entry("a/b", B, 2)], UnsafePath, "both a file and a directory"),
        ([Entry("x/a", A, 1), Entry("x/a/b/c", B, 2)], UnsafePath, "'x/a' is both a file and a directory"),
        ([Entry("../x", A, 1)], UnsafePath, "'..' segment"),
        ([Entry("e\u0301", A, 1)], UnsafePath, "NFC"),
        ([Entry("a", A.upper(), 1)], FormatError, "invalid hash of 'a'"),
        ([Entry("a", A, -1)], FormatError, "invalid size -1"),
        ([Entry("a", A, 1.0)], FormatError, "invalid size"),  # type: ignore[arg-type]
        ([Entry("a", A, "1")], FormatError, "invalid size"),  # type: ignore[arg-type]
        ([Entry("a", A, 1, False, '{"b":1, "a":2}')], FormatError, "meta of 'a'"),
        ([Entry("a", A, 1, False, "[]")], FormatError, "must be a JSON object"),
    ],
)
def test_from_entries_refuses(entries: list[Entry], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Manifest.from_entries(entries)


def test_from_entries_refuses_bad_package_meta() -> None:
    with pytest.raises(FormatError):
        Manifest.from_entries([], {"x": float("nan")})
    with pytest.raises(FormatError):
        Manifest.from_entries([], {"x": "\ud800"})


def test_files_fingerprint_ignores_metadata_only() -> None:
    a = _m(Entry("a", A, 1, False, '{"x":1}'), meta={"message": "one"})
    b = _m(Entry("a", A, 1), meta={"message": "two"})
    c = _m(Entry("a", A, 1, True))
    assert a.files_fingerprint() == b.files_fingerprint() != c.files_fingerprint()
    assert a.top_hash != b.top_hash
    assert files_fingerprint(a.keys, a.raw_digests, a.sizes, a.executable_flags) == a.files_fingerprint()


def test_big_manifest_chunks_match_single_pass() -> None:
    entries = [Entry(f"f{i:05d}", A, i) for i in range(10_000)]  # > one 4096-line chunk
    m = _m(*entries)
    text = m.canonical_text()
    assert text == reference_text([(e.key, e.sha256, e.size, e.executable, e.meta) for e in entries])
    assert m.top_hash == hashlib.sha256(text).hexdigest()


# -- prefixes ------------------------------------------------------------------------------

TOPS = ["abcdef0" + "1" * 57, "abcdef0" + "2" * 57, "1234567" + "0" * 57]


def test_resolve_prefix_unique_and_case() -> None:
    assert resolve_prefix("1234567", TOPS) == TOPS[2]
    assert resolve_prefix("ABCDEF01", TOPS) == TOPS[0]
    assert resolve_prefix(TOPS[1], TOPS) == TOPS[1]


def test_resolve_prefix_ambiguous_lists_candidates() -> None:
    with pytest.raises(AmbiguousPrefix) as exc:
        resolve_prefix("abcdef0", TOPS + [TOPS[0]])
    assert TOPS[0] in str(exc.value) and TOPS[1] in str(exc.value)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("prefix", ["abcdef", "", "abcdefg", "abc def0", "0" * 65])
def test_resolve_prefix_invalid(prefix: str) -> None:
    with pytest.raises(UsageError, match="at least 7 hex"):
        resolve_prefix(prefix, TOPS)


def test_resolve_prefix_not_found() -> None:
    with pytest.raises(NotFound, match="no package manifest matches"):
        resolve_prefix("fffffff", TOPS)


# -- property: the pure-Python top hash equals the one manifest_io recomputes -----------------

_segment = st.one_of(
    st.sampled_from(["a", "b", "with space", " lead", "trail ", "😀", "🐍 py", "日本", "é", ".x", "..y", "git"]),
    st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"), min_size=1, max_size=6),
).map(lambda s: unicodedata.normalize("NFC", s))
_key = st.lists(_segment, min_size=1, max_size=3).map("/".join)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_meta = st.dictionaries(st.text(max_size=6), _json, max_size=3)


def _valid_keys(keys: list[str]) -> list[str]:
    out: list[str] = []
    for k in dict.fromkeys(keys):
        try:
            out.append(check_key(k))
        except UnsafePath:
            pass
    dirs = {k[:i] for k in out for i in range(len(k)) if k[i] == "/"}
    return [k for k in out if k not in dirs]


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(_key, max_size=12),
    data=st.data(),
    meta=_meta,
)
def test_python_and_parquet_top_hash_agree(keys: list[str], data: st.DataObject, meta: dict[str, Any]) -> None:
    entries = []
    for k in _valid_keys(keys):
        blob = data.draw(st.binary(max_size=8))
        entry_meta = canonical_json(data.draw(_meta))
        entries.append(Entry(k, sha(blob), len(blob), data.draw(st.booleans()), entry_meta))
    m = Manifest.from_entries(entries, meta)
    ordered = sorted(entries, key=lambda e: e.key.encode())
    assert m.canonical_text() == reference_text(
        [(e.key, e.sha256, e.size, e.executable, e.meta) for e in ordered], canonical_json(meta)
    )
    back = read_manifest_bytes(manifest_to_bytes(m), m.top_hash)  # recomputes and checks the top hash
    assert back.top_hash == m.top_hash
    assert back.canonical_text() == m.canonical_text()
    assert list(back) == list(m) and back.meta == m.meta
