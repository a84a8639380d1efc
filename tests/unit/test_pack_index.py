"""Pack indexes in Parquet (gitquilt.manifest_io): round trip, and hostile indexes refused in one line."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitquilt.errors import FormatError, UnsupportedFormat
from gitquilt.manifest_io import (
    PACK_ID_KEY,
    PACK_INDEX_SCHEMA,
    PACK_SIZE_KEY,
    pack_index_to_bytes,
    read_pack_index_bytes,
    read_pack_index_file,
)
from gitquilt.packs import PackIndex


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FRAGS = [b"alpha", b"", b"bravo!", b"c" * 100]
PACK = b"".join(FRAGS)
PACK_ID = sha(PACK)


def good_rows() -> list[tuple[str, int, int]]:
    rows, off = [], 0
    for f in FRAGS:
        rows.append((sha(f), off, len(f)))
        off += len(f)
    return rows


def hostile(rows: list[tuple[Any, Any, Any]] | None = None, *, pack_id: str | bytes | None = PACK_ID,
            size: str | bytes | None = str(len(PACK)), columns: dict[str, Any] | None = None,
            extra_meta: dict[bytes, bytes] | None = None) -> bytes:
    """An index written straight with pyarrow, bypassing every check."""
    if columns is None:
        rows = good_rows() if rows is None else rows
        columns = {
            "sha256": pa.array([r[0] for r in rows], pa.string()),
            "offset": pa.array([r[1] for r in rows], pa.int64()),
            "length": pa.array([r[2] for r in rows], pa.int64()),
        }
    meta: dict[bytes, bytes] = {}
    if pack_id is not None:
        meta[PACK_ID_KEY] = pack_id if isinstance(pack_id, bytes) else pack_id.encode()
    if size is not None:
        meta[PACK_SIZE_KEY] = size if isinstance(size, bytes) else size.encode()
    meta.update(extra_meta or {})
    table = pa.Table.from_arrays(list(columns.values()), names=list(columns)).replace_schema_metadata(meta)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def refused(data: bytes, pack_id: str = PACK_ID, kind: type[Exception] = FormatError) -> str:
    with pytest.raises(kind) as info:
        read_pack_index_bytes(data, pack_id)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"pack index {pack_id[:12]}"), message
    return message


# -- the happy path -------------------------------------------------------------------------
def test_round_trip_bytes_and_file(tmp_path: Path) -> None:
    data = pack_index_to_bytes(good_rows(), PACK_ID, len(PACK))
    cols = read_pack_index_bytes(data, PACK_ID)
    assert cols.pack_id == PACK_ID and cols.pack_size == len(PACK)
    index = PackIndex(*cols)
    assert [tuple(e) for e in index] == good_rows()
    path = tmp_path / f"{PACK_ID}.idx"
    path.write_bytes(data)
    assert PackIndex(*read_pack_index_file(str(path), PACK_ID)) == index


def test_written_schema_and_metadata() -> None:
    data = pack_index_to_bytes(good_rows(), PACK_ID, len(PACK))
    pf = pq.ParquetFile(pa.BufferReader(data))
    assert pf.schema_arrow.remove_metadata() == PACK_INDEX_SCHEMA
    assert pf.schema_arrow.metadata == {b"gitquilt.pack": PACK_ID.encode(), b"gitquilt.pack_size": str(len(PACK)).encode()}
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"


def test_a_pack_index_value_encodes_directly() -> None:
    index = PackIndex.from_entries(PACK_ID, len(PACK), good_rows())
    data = pack_index_to_bytes(index, index.pack_id, index.pack_size)
    assert PackIndex(*read_pack_index_bytes(data, PACK_ID)) == index


def test_large_string_and_unknown_columns_are_accepted() -> None:
    rows = good_rows()
    data = hostile(columns={
        "sha256": pa.array([r[0] for r in rows], pa.large_string()),
        "offset": pa.array([r[1] for r in rows], pa.int64()),
        "length": pa.array([r[2] for r in rows], pa.int64()),
        "comment": pa.array(["x"] * len(rows)),
    })
    assert [tuple(e) for e in PackIndex(*read_pack_index_bytes(data, PACK_ID))] == rows


def test_a_many_row_index_reads_back() -> None:
    frags = [str(i).encode() for i in range(100_000)]
    rows, off = [], 0
    for f in frags:
        rows.append((sha(f), off, len(f)))
        off += len(f)
    pack_id = sha(b"".join(frags))
    index = PackIndex(*read_pack_index_bytes(pack_index_to_bytes(rows, pack_id, off), pack_id))
    assert len(index) == 100_000 and index[99_999] == rows[-1] and index.find(sha(b"4242")) == rows[4242]


# -- hostile indexes ------------------------------------------------------------------------
def _shift(rows: list[tuple[str, int, int]], i: int, offset: int | None = None, length: int | None = None,
           digest: str | None = None) -> list[tuple[str, int, int]]:
    rows = list(rows)
    d, o, n = rows[i]
    rows[i] = (digest if digest is not None else d, offset if offset is not None else o,
               length if length is not None else n)
    return rows


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("offset beyond the pack", hostile(_shift(good_rows(), 3, offset=10**6)), "outside the pack"),
        ("length beyond the pack", hostile(_shift(good_rows(), 3, length=10**6)), "outside the pack"),
        ("negative length", hostile(_shift(good_rows(), 2, length=-1)), "negative length"),
        ("negative offset", hostile(_shift(good_rows(), 0, offset=-5)), "outside the pack"),
        ("sum overflows int64", hostile([(sha(b"a"), 0, 2**63 - 1), (sha(b"b"), 2**63 - 1, 2**63 - 1)],
                                        size=str(2**63 - 1)), "beyond the pack"),
        ("upper-case hash", hostile(_shift(good_rows(), 0, digest=sha(FRAGS[0]).upper())), "64 lowercase hex"),
        ("short hash", hostile(_shift(good_rows(), 0, digest="abc")), "64 lowercase hex"),
        ("prefixed hash", hostile(_shift(good_rows(), 0, digest="sha256:" + sha(b"x")[:57])), "64 lowercase hex"),
        ("duplicate fragment", hostile([(sha(b"ab"), 0, 2), (sha(b"ab"), 2, 2)], pack_id=PACK_ID, size="4"),
         "listed twice"),
        ("overlap", hostile(_shift(good_rows(), 3, offset=5)), "back to back"),
        ("gap", hostile(_shift(good_rows(), 3, offset=12), size=str(len(PACK) + 1)), "back to back"),
        ("first not at 0", hostile([(sha(b"a"), 1, 21)]), "not 0"),
        ("ends before the pack does", hostile(size=str(len(PACK) + 7)), "the pack holds"),
        ("no rows", hostile([]), "lists no fragments"),
        ("wrong pack id", hostile(pack_id=sha(b"another pack")), "not the pack it is named after"),
        ("pack id missing", hostile(pack_id=None), "missing 'gitquilt.pack'"),
        ("pack id not utf-8", hostile(pack_id=b"\xff" * 64), "not the pack it is named after"),
        ("size missing", hostile(size=None), "gitquilt.pack_size"),
        ("size negative", hostile(size="-22"), "gitquilt.pack_size"),
        ("size leading zero", hostile(size="022"), "gitquilt.pack_size"),
        ("size not a number", hostile(size="22 bytes"), "gitquilt.pack_size"),
        ("size too large", hostile(size=str(2**63)), "gitquilt.pack_size"),
        ("missing column", hostile(columns={"sha256": pa.array([sha(PACK)]), "offset": pa.array([0])}),
         "missing column 'length'"),
        ("length as string", hostile(columns={"sha256": pa.array([sha(PACK)]), "offset": pa.array([0]),
                                              "length": pa.array(["22"])}), "column 'length' has type string"),
        ("offset as int32", hostile(columns={"sha256": pa.array([sha(PACK)]), "offset": pa.array([0], pa.int32()),
                                             "length": pa.array([22])}), "column 'offset' has type int32"),
        ("null hash", hostile(columns={"sha256": pa.array([None], pa.string()), "offset": pa.array([0]),
                                       "length": pa.array([22])}), "missing values"),
        ("null length", hostile(columns={"sha256": pa.array([sha(PACK)]), "offset": pa.array([0]),
                                         "length": pa.array([None], pa.int64())}), "missing values"),
        ("not parquet", b"PAR1 this is not a parquet file PAR1", "not a readable Parquet pack index"),
        ("truncated", pack_index_to_bytes(good_rows(), PACK_ID, len(PACK))[:-40], "not a readable Parquet"),
        ("empty file", b"", "not a readable Parquet"),
    ],
)
def test_hostile_index_is_refused(name: str, data: bytes, needle: str) -> None:
    message = refused(data)
    assert needle in message, (name, message)


def test_unknown_feature_asks_for_an_upgrade() -> None:
    message = refused(hostile(extra_meta={b"gitquilt.required": b"zstd-frames"}), kind=UnsupportedFormat)
    assert "zstd-frames" in message and "upgrade gitquilt" in message


def test_index_copied_under_another_pack_name_is_refused() -> None:
    data = pack_index_to_bytes(good_rows(), PACK_ID, len(PACK))
    other = sha(b"x")
    assert "not the pack it is named after" in refused(data, other)


def test_invalid_name_is_refused_before_reading() -> None:
    with pytest.raises(FormatError, match="invalid pack id"):
        read_pack_index_bytes(pack_index_to_bytes(good_rows(), PACK_ID, len(PACK)), PACK_ID.upper())


def test_unreadable_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot open"):
        read_pack_index_file(str(tmp_path / "absent.idx"), PACK_ID)


@pytest.mark.parametrize(
    ("rows", "size", "needle"),
    [
        (_shift(good_rows(), 3, offset=10**6), len(PACK), "outside the pack"),
        (_shift(good_rows(), 0, digest="nope"), len(PACK), "64 lowercase hex"),
        ([], 0, "lists no fragments"),
        (good_rows() + [good_rows()[0]], len(PACK), "back to back"),
        (good_rows(), -1, "invalid pack size"),
        (good_rows(), 2**63, "invalid pack size"),
        ([(sha(b"a"), 0, 2**64)], 1, "cannot encode"),
    ],
)
def test_writer_refuses_what_readers_would(rows: list[tuple[str, int, int]], size: int, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        pack_index_to_bytes(rows, PACK_ID, size)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_writer_refuses_a_bad_pack_id() -> None:
    with pytest.raises(FormatError, match="invalid pack id"):
        pack_index_to_bytes(good_rows(), "pack", len(PACK))


# -- fuzzing: only a valid index or a one-line FormatError, never another exception --------------
@st.composite
def _mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i: i + draw(st.integers(1, 64))]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


SEED = pack_index_to_bytes(good_rows(), PACK_ID, len(PACK))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutated(SEED))
def test_mutated_index_is_valid_or_a_format_error(data: bytes) -> None:
    try:
        cols = read_pack_index_bytes(data, PACK_ID)
    except FormatError as exc:
        assert "\n" not in str(exc)
        return
    index = PackIndex(*cols)  # whatever survived must satisfy every rule
    assert PackIndex.from_entries(PACK_ID, cols.pack_size, list(index)) == index
