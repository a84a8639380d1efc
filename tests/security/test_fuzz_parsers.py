"""RELIABILITY.md §1.10: fuzz the manifest and pointer parsers.

Random and mutated inputs may only ever produce a manifest that hashes to its name, or a
QuiltError — never another exception (which the CLI would report as an internal error),
and never a write into the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gitquilt.errors import QuiltError
from gitquilt.manifest import Entry, Manifest
from gitquilt.manifest_io import manifest_to_bytes, read_manifest_bytes
from gitquilt.manifest_text import parse_canonical_text
from gitquilt.pointer import Pointer, parse_pointer
from gitquilt.store import Store
from tests.security.hostile import hostile_manifest, row, sha

_MANIFEST = Manifest.from_entries(
    [Entry("a.txt", sha(b"a"), 1), Entry("dir/b.bin", sha(b"bb"), 2, True), Entry("é 😀", sha(b""), 0, False, '{"k":[1]}')],
    {"message": "fuzz"},
)
SEED_PARQUET = manifest_to_bytes(_MANIFEST)
TOP = _MANIFEST.top_hash
SEED_POINTER = Pointer("pkg", TOP, 3, 3).to_bytes()

_settings = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few bit flips, byte overwrites, deletions, insertions or a truncation."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate", "duplicate"]))
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "truncate":
            del data[i:]
        else:
            data[i:i] = data[i : i + draw(st.integers(1, 32))]
    return bytes(data)


def _read(data: bytes, top: str) -> None:
    try:
        m = read_manifest_bytes(data, top)
    except QuiltError:
        return
    assert m.top_hash == top  # accepted only when the content is exactly what the name promises
    assert m.canonical_text() == _MANIFEST.canonical_text() or top != TOP


@_settings
@given(mutated(SEED_PARQUET))
@example(SEED_PARQUET[:-1])
@example(SEED_PARQUET[:8])
@example(b"PAR1" + b"\0" * 100 + b"PAR1")
def test_mutated_parquet_manifest(data: bytes) -> None:
    _read(data, TOP)


@_settings
@given(st.binary(max_size=2048))
def test_random_bytes_as_manifest(data: bytes) -> None:
    _read(data, TOP)


_hostile_rows = st.lists(
    st.tuples(
        st.text(max_size=12),
        st.one_of(st.just(sha(b"x")), st.text(max_size=70)),
        st.integers(-(2**63), 2**63 - 1),
        st.booleans(),
        st.one_of(st.just("{}"), st.text(max_size=20)),
    ),
    max_size=6,
)


@_settings
@given(_hostile_rows, st.one_of(st.just("{}"), st.text(max_size=20)))
def test_structurally_valid_parquet_with_random_values(rows: list[tuple[str, str, int, bool, str]], meta: str) -> None:
    """Right schema, attacker-chosen values, and the correct top hash for them."""
    try:
        data, top = hostile_manifest(rows, meta)
    except UnicodeEncodeError:
        return  # the attacker cannot write lone surrogates into Parquet either
    try:
        m = read_manifest_bytes(data, top)
    except QuiltError:
        return
    assert m.top_hash == top
    assert [e.key for e in m] == sorted((r[0] for r in rows), key=lambda k: k.encode())


def test_fuzzed_manifests_never_enter_the_store(tmp_path: Path) -> None:
    """The store decodes before it writes: whatever the parser refuses leaves no file behind."""
    store = Store(tmp_path / "cache").ensure()

    @_settings
    @given(mutated(SEED_PARQUET))
    def check(data: bytes) -> None:
        try:
            store.put_manifest_bytes(data, TOP)
        except QuiltError:
            assert not store.has_manifest(TOP)
            assert list(store.manifests.iterdir()) == []
            return
        assert store.read_manifest(TOP).canonical_text() == _MANIFEST.canonical_text()
        store.manifest_path(TOP).unlink()
        store.drop_manifest_text(TOP)

    check()
    assert list(store.tmp.iterdir()) == []


@_settings
@given(mutated(_MANIFEST.canonical_text()))
def test_mutated_canonical_text(data: bytes) -> None:
    """The cache's canonical-text copies: accepted only when exactly the named manifest."""
    try:
        m = parse_canonical_text(data, TOP)
    except QuiltError:
        assert data != _MANIFEST.canonical_text()
        return
    assert m.canonical_text() == data == _MANIFEST.canonical_text()


# -- pointers ----------------------------------------------------------------------------------

def _parse(data: bytes) -> None:
    try:
        p = parse_pointer(data, "pkg.quilt")
    except QuiltError:
        return
    assert p.path == "pkg"
    assert len(p.top_hash) == 64 and p.files >= 0 and p.bytes >= 0


@settings(max_examples=500, deadline=None)
@given(mutated(SEED_POINTER))
def test_mutated_pointer(data: bytes) -> None:
    _parse(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_as_pointer(data: bytes) -> None:
    _parse(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
@example('format = 1\npath = "pkg"\ntop_hash = "' + "a" * 64 + '"\nfiles = 1e3\nbytes = 1\n')
@example("format = 1\npath = 'pkg'\ntop_hash = '''" + "a" * 64 + "'''\nfiles = 0x10\nbytes = 0o7\n")
@example("format = 99999999999999999999999\n")
@example("[format]\n")
def test_random_text_as_pointer(text: str) -> None:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        pytest.skip("lone surrogates have no UTF-8 bytes")  # pragma: no cover - hypothesis avoids them
    _parse(data)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["format", "path", "top_hash", "files", "bytes", "extra"]),
        st.one_of(st.integers(-5, 2**70), st.text(max_size=70), st.booleans(), st.floats(allow_nan=False),
                  st.just("pkg"), st.just(TOP), st.just(1)),
        max_size=6,
    )
)
def test_structured_random_pointer(doc: dict[str, object]) -> None:
    lines = []
    for k, v in doc.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, str):
            lines.append(f"{k} = {json_str(v)}")
        else:
            lines.append(f"{k} = {v!r}".replace("inf", "inf"))
    _parse("\n".join(lines).encode("utf-8", "surrogatepass"))


def json_str(v: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML escapes for these characters)."""
    import json

    return json.dumps(v)
