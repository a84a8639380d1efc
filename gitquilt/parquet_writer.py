"""A minimal Parquet writer: flat tables of required string, int64 and bool columns.

Written for manifests, so that ``add`` does not import pyarrow (with numpy, ≈ 80 ms
of CPU on every add, competing with the hashing threads for the two cores). It emits
the oldest, most widely read subset of the format: data pages v1, PLAIN encoding,
REQUIRED columns (no definition or repetition levels), GZIP or no compression, no
statistics, no Arrow schema (readers map ``BYTE_ARRAY``/``STRING`` to ``string``).
Everything that reads Parquet reads it; the tests read every file back with pyarrow.
The thrift compact protocol is encoded by hand for just the structures written.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from gitquilt.manifest import EMPTY_META, PARQUET_META_KEY, Manifest, canonical_json

MAGIC = b"PAR1"
CREATED_BY = b"gitquilt parquet_writer 1"
#: One data page per column and row group; its size must fit a thrift i32.
MAX_PAGE_BYTES = (1 << 31) - 1

# thrift compact protocol field types
_I32, _I64, _BINARY, _LIST, _STRUCT = 5, 6, 8, 9, 12
# parquet.thrift enums
_BOOLEAN, _INT64, _BYTE_ARRAY = 0, 2, 6
_REQUIRED = 0
_UTF8 = 0
_PLAIN, _RLE = 0, 3
_UNCOMPRESSED, _GZIP = 0, 2
_DATA_PAGE = 0
#: Column kind -> parquet physical type.
_PHYSICAL = {"string": _BYTE_ARRAY, "int64": _INT64, "bool": _BOOLEAN}


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _int(n: int) -> bytes:
    """A zigzag varint (thrift i16/i32/i64)."""
    return _varint((n << 1) ^ (n >> 63))


def _binary(b: bytes) -> bytes:
    return _varint(len(b)) + b


def _list_header(size: int, elem_type: int) -> bytes:
    return bytes([(size << 4) | elem_type]) if size < 15 else bytes([0xF0 | elem_type]) + _varint(size)


class _Struct:
    """One thrift compact struct; fields are added in increasing id order."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._last = 0

    def _field(self, fid: int, ftype: int) -> None:
        delta = fid - self._last
        if 0 < delta <= 15:
            self._buf.append((delta << 4) | ftype)
        else:
            self._buf.append(ftype)
            self._buf += _int(fid)
        self._last = fid

    def _put(self, fid: int, ftype: int, encoded: bytes) -> _Struct:
        self._field(fid, ftype)
        self._buf += encoded
        return self

    def i32(self, fid: int, value: int) -> _Struct:
        return self._put(fid, _I32, _int(value))

    def i64(self, fid: int, value: int) -> _Struct:
        return self._put(fid, _I64, _int(value))

    def binary(self, fid: int, value: bytes) -> _Struct:
        return self._put(fid, _BINARY, _binary(value))

    def struct(self, fid: int, value: _Struct) -> _Struct:
        return self._put(fid, _STRUCT, value.encode())

    def structs(self, fid: int, values: Sequence[_Struct]) -> _Struct:
        self._field(fid, _LIST)
        self._buf += _list_header(len(values), _STRUCT)
        for v in values:
            self._buf += v.encode()
        return self

    def i32s(self, fid: int, values: Sequence[int]) -> _Struct:
        self._field(fid, _LIST)
        self._buf += _list_header(len(values), _I32) + b"".join(_int(v) for v in values)
        return self

    def binaries(self, fid: int, values: Sequence[bytes]) -> _Struct:
        self._field(fid, _LIST)
        self._buf += _list_header(len(values), _BINARY) + b"".join(_binary(v) for v in values)
        return self

    def encode(self) -> bytes:
        return bytes(self._buf) + b"\x00"


@dataclass(frozen=True)
class Column:
    """A column: ``kind`` is "string" (values: UTF-8 ``bytes``), "int64" or "bool"."""

    name: str
    kind: str
    values: Sequence[bytes] | Sequence[int]


def _plain(kind: str, values: Sequence[bytes] | Sequence[int]) -> bytes:
    if kind == "string":
        strings = cast("Sequence[bytes]", values)
        lengths = array("I", [len(v) for v in strings])
        if sys.byteorder != "little":
            lengths.byteswap()
        raw = lengths.tobytes()
        # each value is its 4-byte little-endian length, then its bytes
        return b"".join([part for i, v in enumerate(strings) for part in (raw[4 * i : 4 * i + 4], v)])
    ints = cast("Sequence[int]", values)
    if kind == "int64":
        packed = array("q", ints)
        if sys.byteorder != "little":
            packed.byteswap()
        return packed.tobytes()
    if kind == "bool":  # bit-packed, first value in the lowest bit
        bits = bytes(1 if v else 0 for v in ints)
        if not any(bits):
            return bytes((len(bits) + 7) // 8)
        padded = bits + bytes(-len(bits) % 8)
        return bytes(sum(padded[i + j] << j for j in range(8)) for i in range(0, len(padded), 8))
    raise AssertionError(kind)  # write_table checked the kinds


def _schema_element(col: Column) -> _Struct:
    s = _Struct()
    s.i32(1, _PHYSICAL[col.kind])
    s.i32(3, _REQUIRED)
    s.binary(4, col.name.encode())
    if col.kind == "string":
        s.i32(6, _UTF8)
        s.struct(10, _Struct().struct(1, _Struct()))  # LogicalType: STRING
    return s


def write_table(
    columns: Sequence[Column],
    metadata: dict[bytes, bytes] | None = None,
    row_group_size: int = 1 << 16,
    compress: bool = True,
) -> bytes:
    """Encode ``columns`` (all of one length) as a Parquet file; ``metadata`` is the
    file's key-value metadata. ``compress``: GZIP (level 1) pages."""
    n = len(columns[0].values) if columns else 0
    if any(len(c.values) != n for c in columns):
        raise ValueError("columns of different lengths")
    for col in columns:
        if col.kind not in _PHYSICAL:
            raise ValueError(f"unsupported column kind {col.kind!r}")
    if row_group_size <= 0:
        raise ValueError("row_group_size must be positive")
    out = bytearray(MAGIC)
    row_groups: list[_Struct] = []
    for start in range(0, n, row_group_size):
        rows = min(row_group_size, n - start)
        chunks: list[_Struct] = []
        group_start = len(out)
        group_bytes = 0
        for col in columns:
            data = _plain(col.kind, col.values[start : start + rows])
            if len(data) > MAX_PAGE_BYTES:  # page sizes are thrift i32s
                raise ValueError(f"column {col.name!r}: {len(data)} bytes in {rows} rows is too much for one page")
            page = zlib.compress(data, 1, wbits=31) if compress else data
            header = (
                _Struct()
                .i32(1, _DATA_PAGE)
                .i32(2, len(data))
                .i32(3, len(page))
                .struct(5, _Struct().i32(1, rows).i32(2, _PLAIN).i32(3, _RLE).i32(4, _RLE))
                .encode()
            )
            offset = len(out)
            out += header
            out += page
            meta = (
                _Struct()
                .i32(1, _PHYSICAL[col.kind])
                .i32s(2, [_PLAIN, _RLE])
                .binaries(3, [col.name.encode()])
                .i32(4, _GZIP if compress else _UNCOMPRESSED)
                .i64(5, rows)
                .i64(6, len(header) + len(data))
                .i64(7, len(header) + len(page))
                .i64(9, offset)
            )
            chunks.append(_Struct().i64(2, offset).struct(3, meta))
            group_bytes += len(header) + len(data)
        row_groups.append(
            _Struct()
            .structs(1, chunks)
            .i64(2, group_bytes)
            .i64(3, rows)
            .i64(5, group_start)
            .i64(6, len(out) - group_start)
        )
    root = _Struct().binary(4, b"schema").i32(5, len(columns))
    footer = (
        _Struct()
        .i32(1, 1)
        .structs(2, [root, *(_schema_element(c) for c in columns)])
        .i64(3, n)
        .structs(4, row_groups)
    )
    if metadata:
        footer.structs(5, [_Struct().binary(1, k).binary(2, v) for k, v in metadata.items()])
    footer.binary(6, CREATED_BY)
    encoded = footer.encode()
    out += encoded
    out += len(encoded).to_bytes(4, "little")
    out += MAGIC
    return bytes(out)


def manifest_to_parquet(manifest: Manifest, compress: bool = True) -> bytes:
    """A manifest as Parquet (docs/FORMAT.md "Parquet manifest"), without pyarrow."""
    n = len(manifest)
    hexes = manifest.raw_digests.hex().encode()
    metas = manifest.entry_metas
    columns = [
        Column("logical_key", "string", [k.encode() for k in manifest.keys]),
        Column("sha256", "string", [hexes[i : i + 64] for i in range(0, 64 * n, 64)]),
        Column("size", "int64", manifest.sizes),
        Column("executable", "bool", manifest.executable_flags),
        Column("meta", "string", [m.encode() for m in metas] if metas is not None else [EMPTY_META.encode()] * n),
    ]
    return write_table(columns, {PARQUET_META_KEY: canonical_json(manifest.meta).encode()}, compress=compress)
