"""gitquilt.parquet_writer: gitquilt's own Parquet writer, checked by reading every file
back with pyarrow (the reference reader) and with gitquilt's validating manifest reader."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitquilt import store
from gitquilt.errors import UnsafePath
from gitquilt.keys import check_key
from gitquilt.manifest import Entry, Manifest
from gitquilt.manifest_io import SCHEMA, manifest_to_bytes, read_manifest_bytes
from gitquilt.parquet_writer import CREATED_BY, Column, _Struct, manifest_to_parquet, write_table


def _manifest(n: int, executable_every: int = 3, meta_every: int = 0, message: str = "ünïcode ✓") -> Manifest:
    entries = [
        Entry(
            f"d{i % 7}/f{i:05d}-é.bin",
            hashlib.sha256(str(i).encode()).hexdigest(),
            i * 1000 + 1,
            executable_every > 0 and i % executable_every == 0,
            f'{{"i":{i}}}' if meta_every and i % meta_every == 0 else "{}",
        )
        for i in range(n)
    ]
    return Manifest.from_entries(entries, {"message": message})


def _same_table(ours: bytes, reference: bytes) -> None:
    a, b = pq.read_table(pa.BufferReader(ours)), pq.read_table(pa.BufferReader(reference))
    assert a.schema.metadata == b.schema.metadata
    assert [f.name for f in a.schema] == [f.name for f in b.schema]
    assert [f.type for f in a.schema] == [f.type for f in b.schema]  # string, string, int64, bool, string
    assert a.cast(b.schema).equals(b)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000])
@pytest.mark.parametrize("compress", [True, False])
def test_manifest_reads_back_like_pyarrows_own(n: int, compress: bool) -> None:
    m = _manifest(n, meta_every=4)
    data = manifest_to_parquet(m, compress=compress)
    _same_table(data, manifest_to_bytes(m))
    back = read_manifest_bytes(data, m.top_hash)  # the validating reader, top hash recomputed
    assert list(back) == list(m) and back.meta == m.meta


def test_schema_types_and_metadata_match_the_format() -> None:
    data = manifest_to_parquet(_manifest(3))
    pf = pq.ParquetFile(pa.BufferReader(data))
    schema = pf.schema_arrow
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in SCHEMA]
    assert schema.metadata == {b"gitquilt.meta": '{"message":"ünïcode ✓"}'.encode()}
    assert pf.metadata.created_by == CREATED_BY.decode()
    assert pf.metadata.row_group(0).column(0).compression == "GZIP"


def test_no_entry_meta_reads_back_as_none() -> None:
    m = _manifest(20, meta_every=0)
    assert m.entry_metas is None
    assert read_manifest_bytes(manifest_to_parquet(m), m.top_hash).entry_metas is None


@pytest.mark.parametrize("rows, group", [(10, 3), (20, 1), (65_537, 1 << 16)])
def test_row_groups(rows: int, group: int) -> None:
    """Several row groups (and ≥ 15 of them: the long form of a thrift list header)."""
    columns = [
        Column("s", "string", [str(i).encode() for i in range(rows)]),
        Column("n", "int64", [i - rows // 2 for i in range(rows)]),
        Column("b", "bool", [i % 5 == 0 for i in range(rows)]),
    ]
    pf = pq.ParquetFile(pa.BufferReader(write_table(columns, row_group_size=group)))
    assert pf.metadata.num_row_groups == -(-rows // group)
    table = pf.read()
    assert table.column("s").to_pylist() == [str(i) for i in range(rows)]
    assert table.column("n").to_pylist() == [i - rows // 2 for i in range(rows)]  # negatives too
    assert table.column("b").to_pylist() == [i % 5 == 0 for i in range(rows)]


def test_many_columns_use_the_long_list_header() -> None:
    columns = [Column(f"c{i}", "int64", [i, i + 1]) for i in range(20)]
    table = pq.read_table(pa.BufferReader(write_table(columns)))
    assert table.column_names == [f"c{i}" for i in range(20)]
    assert table.column("c19").to_pylist() == [19, 20]


def test_thrift_field_header_long_form() -> None:
    """A field id more than 15 after the previous one: type byte, then the id as a zigzag varint."""
    assert _Struct().i32(20, 1).encode() == b"\x05\x28\x02\x00"
    assert _Struct().i32(1, 1).i64(3, 300).encode() == b"\x15\x02\x26\xd8\x04\x00"


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        write_table([Column("a", "int64", [1]), Column("b", "int64", [])])
    with pytest.raises(ValueError, match="unsupported column kind"):
        write_table([Column("a", "float", [1.0])])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="row_group_size"):
        write_table([Column("a", "int64", [1])], row_group_size=0)


def test_store_uses_pyarrow_above_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _manifest(5)
    assert pq.ParquetFile(pa.BufferReader(store.encode_manifest(m))).metadata.created_by == CREATED_BY.decode()
    monkeypatch.setattr(store, "OWN_WRITER_MAX_ENTRIES", 4)
    big = store.encode_manifest(m)
    assert pq.ParquetFile(pa.BufferReader(big)).metadata.created_by != CREATED_BY.decode()
    assert list(read_manifest_bytes(big, m.top_hash)) == list(m)


def _valid_key(key: str) -> bool:
    try:
        check_key(key)
    except UnsafePath:
        return False
    return True


_keys = st.lists(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_characters="/"), min_size=1, max_size=12)
    .filter(_valid_key),
    min_size=0, max_size=40, unique=True,
)


@settings(max_examples=60, deadline=None)
@given(keys=_keys, execs=st.lists(st.booleans(), min_size=40, max_size=40),
       sizes=st.lists(st.integers(0, 2**62), min_size=40, max_size=40))
def test_any_manifest_round_trips(keys: list[str], execs: list[bool], sizes: list[int]) -> None:
    entries = [Entry(k, hashlib.sha256(k.encode()).hexdigest(), sizes[i], execs[i]) for i, k in enumerate(keys)]
    m = Manifest.from_entries(entries, {"k": keys[:3]})
    data = manifest_to_parquet(m)
    _same_table(data, manifest_to_bytes(m))
    assert read_manifest_bytes(data, m.top_hash).top_hash == m.top_hash


def test_large_entry_metadata_goes_to_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _manifest(6, meta_every=2)
    monkeypatch.setattr(store, "OWN_WRITER_MAX_META_BYTES", 10)
    data = store.encode_manifest(m)
    assert pq.ParquetFile(pa.BufferReader(data)).metadata.created_by != CREATED_BY.decode()
    assert list(read_manifest_bytes(data, m.top_hash)) == list(m)


def test_a_page_over_the_thrift_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import gitquilt.parquet_writer as pw

    monkeypatch.setattr(pw, "MAX_PAGE_BYTES", 15)
    write_table([Column("n", "int64", [1])])  # 8 bytes: fine
    with pytest.raises(ValueError, match="too much for one page"):
        write_table([Column("n", "int64", [1, 2])])
