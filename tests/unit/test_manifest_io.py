"""gitquilt.manifest_io: Parquet encoding, schema checks, validation on every read."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gitquilt.errors import FormatError, IntegrityError, QuiltError, UnsafePath, UnsupportedFormat
from gitquilt.manifest import Entry, Manifest
from gitquilt.manifest_io import SCHEMA, manifest_to_bytes, read_manifest_bytes, read_manifest_file
from tests.security.hostile import hostile_manifest, parquet_bytes, row, sha, top_hash

GOOD_ROWS = [row("a.txt", b"a"), row("d/b.bin", b"bb", executable=True), row("é.csv", b"c", meta='{"n":1}')]


def _good() -> Manifest:
    return Manifest.from_entries([Entry(*r) for r in GOOD_ROWS], {"message": "m"})


def test_round_trip_bytes_and_file(tmp_path: Path) -> None:
    m = _good()
    data = manifest_to_bytes(m)
    back = read_manifest_bytes(data, m.top_hash)
    assert list(back) == list(m) and back.meta == m.meta and back.top_hash == m.top_hash
    p = tmp_path / f"{m.top_hash}.parquet"
    p.write_bytes(data)
    assert list(read_manifest_file(str(p), m.top_hash)) == list(m)


def test_written_schema_and_metadata() -> None:
    table = pq.read_table(pa.BufferReader(manifest_to_bytes(_good())))
    assert table.schema.remove_metadata() == SCHEMA
    assert table.schema.metadata == {b"gitquilt.meta": b'{"message":"m"}'}
    assert pq.ParquetFile(pa.BufferReader(manifest_to_bytes(_good()))).metadata.row_group(0).column(0).compression == "ZSTD"


def test_no_entry_meta_reads_back_as_none() -> None:
    m = Manifest.from_entries([Entry("a", sha(b"a"), 1)])
    assert read_manifest_bytes(manifest_to_bytes(m), m.top_hash).entry_metas is None


def test_hostile_helper_agrees_with_writer() -> None:
    """The test helper's independent canonical text gives the writer's top hash."""
    data, top = hostile_manifest(GOOD_ROWS, '{"message":"m"}')
    assert top == _good().top_hash
    assert list(read_manifest_bytes(data, top)) == list(_good())


def test_wrong_name_is_integrity_error() -> None:
    m = _good()
    with pytest.raises(IntegrityError, match=f"not to its name {'0' * 64}"):
        read_manifest_bytes(manifest_to_bytes(m), "0" * 64)


def test_large_string_columns_and_extra_columns_are_accepted() -> None:
    data = parquet_bytes(
        {
            "logical_key": pa.array([r[0] for r in GOOD_ROWS], pa.large_string()),
            "sha256": pa.array([r[1] for r in GOOD_ROWS], pa.large_string()),
            "size": pa.array([r[2] for r in GOOD_ROWS], pa.int64()),
            "executable": pa.array([r[3] for r in GOOD_ROWS]),
            "meta": pa.array([r[4] for r in GOOD_ROWS], pa.large_string()),
            "future": pa.array([1, 2, 3]),
        },
        {b"gitquilt.meta": b'{"message":"m"}', b"gitquilt.required": b""},
    )
    assert read_manifest_bytes(data, _good().top_hash).top_hash == _good().top_hash


def _columns(**override: object) -> dict[str, object]:
    cols: dict[str, object] = {
        "logical_key": pa.array([r[0] for r in GOOD_ROWS], pa.string()),
        "sha256": pa.array([r[1] for r in GOOD_ROWS], pa.string()),
        "size": pa.array([r[2] for r in GOOD_ROWS], pa.int64()),
        "executable": pa.array([r[3] for r in GOOD_ROWS]),
        "meta": pa.array([r[4] for r in GOOD_ROWS], pa.string()),
    }
    for k, v in override.items():
        if v is None:
            del cols[k]
        else:
            cols[k] = v
    return cols


META = {b"gitquilt.meta": b"{}"}
TOP = top_hash(GOOD_ROWS)


@pytest.mark.parametrize(
    "columns, metadata, error, message",
    [
        (_columns(size=None), META, FormatError, "missing column 'size'"),
        (_columns(logical_key=None), META, FormatError, "missing column 'logical_key'"),
        (_columns(size=pa.array(["1", "2", "1"])), META, FormatError, "column 'size' has type string"),
        (_columns(size=pa.array([1, 2, 1], pa.int32())), META, FormatError, "column 'size' has type int32"),
        (_columns(executable=pa.array([0, 1, 0])), META, FormatError, "column 'executable'"),
        (_columns(size=pa.array([1, None, 1], pa.int64())), META, FormatError, "missing values"),
        (_columns(logical_key=pa.array(["a.txt", None, "é.csv"])), META, FormatError, "missing values"),
        (_columns(), {}, FormatError, "missing package metadata 'gitquilt.meta'"),
        (_columns(), {b"gitquilt.meta": b"\xff"}, FormatError, "not UTF-8"),
        (_columns(), {b"gitquilt.meta": b'{"b":1, "a":1}'}, FormatError, "canonical"),
        (_columns(), {b"gitquilt.meta": b"[]"}, FormatError, "JSON object"),
        (_columns(), {b"gitquilt.meta": b"{}", b"gitquilt.required": b"chunked,packs"}, UnsupportedFormat,
         "needs features chunked, packs .*upgrade gitquilt"),
    ],
)
def test_schema_and_metadata_refused(columns: dict[str, object], metadata: dict[bytes, bytes],
                                     error: type[QuiltError], message: str) -> None:
    with pytest.raises(error, match=message):
        read_manifest_bytes(parquet_bytes(columns, metadata), TOP)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("a", sha(b"a"), -1, False, "{}")], "negative size for 'a'"),
        ([("a", sha(b"a").upper(), 1, False, "{}")], "hash of 'a'"),
        ([("a", sha(b"a")[:63], 1, False, "{}")], "hash of 'a'"),
        ([("a", "sha256:" + sha(b"a")[7:], 1, False, "{}")], "hash of 'a'"),
        ([("a", sha(b"a"), 1, False, '{"x": 1}')], "canonical"),
        ([("a", sha(b"a"), 1, False, "null")], "JSON object"),
    ],
)
def test_bad_values_refused(rows: list[tuple[str, str, int, bool, str]], message: str) -> None:
    data, top = hostile_manifest(rows)
    with pytest.raises(FormatError, match=message):
        read_manifest_bytes(data, top)


@pytest.mark.parametrize(
    "keys, message",
    [
        (["../../.git/hooks/pre-commit"], "'..' segment"),
        (["/etc/passwd"], "absolute path"),
        (["C:x"], "drive letter"),
        (["a\\..\\b"], "backslash"),
        (["a//b"], "empty path segment"),
        (["a/"], "empty path segment"),
        (["./a"], "'.' segment"),
        ([""], "empty"),
        (["a\x00b"], "control character"),
        (["a\nb"], "control character"),
        ([".GIT/config"], "names a .git directory"),
        (["x/.g\u200cit/hooks/post-checkout"], "names a .git directory"),
        (["git~1/config"], "names a .git directory"),
        ([".git./config"], "names a .git directory"),
        ([".git /config"], "names a .git directory"),
        ([".git::$INDEX_ALLOCATION/config"], "names a .git directory"),
        (["e\u0301"], "NFC"),
        (["x" * 256], "segment longer"),
        (["a", "a"], "duplicate logical key 'a'"),
        (["b", "a"], "out of order"),
        (["a", "a/b"], "both a file and a directory"),
        (["a/b", "a/b/c/d"], "'a/b' is both a file and a directory"),
    ],
)
def test_hostile_keys_refused(keys: list[str], message: str) -> None:
    data, top = hostile_manifest([row(k, b"x") for k in keys])
    with pytest.raises(UnsafePath, match=message) as exc:
        read_manifest_bytes(data, top, where="manifest from test")
    assert str(exc.value).startswith(f"manifest from test {top[:12]}: ")
    assert "\n" not in str(exc.value)


def test_order_and_clash_checked_across_batches() -> None:
    """Rows are validated 65,536 at a time; order and file/dir clashes across batches are still caught."""
    n = 1 << 16
    keys = [f"k{i:06d}" for i in range(n)]
    base = [row(k, b"") for k in keys]
    ok, top = hostile_manifest(base + [row("z", b"")])
    assert len(read_manifest_bytes(ok, top)) == n + 1
    swapped, top = hostile_manifest(base + [row(keys[-1], b"")])
    with pytest.raises(UnsafePath, match="duplicate logical key"):
        read_manifest_bytes(swapped, top)
    # "a" < "a.000000" … < "a/x" by bytes: the file "a" and the directory "a/" lie in different batches
    clash, top = hostile_manifest([row("a", b"")] + [row(f"a.{i:06d}", b"") for i in range(n)] + [row("a/x", b"")])
    with pytest.raises(UnsafePath, match="both a file and a directory"):
        read_manifest_bytes(clash, top)


def test_later_batches_checked_ahead_keep_metas_aligned_and_refuse_damage() -> None:
    """A manifest of several batches is checked one batch ahead in a thread: entry metas
    first seen in a later batch still line up, and damage there is refused."""
    n = 1 << 16
    base = [row(f"k{i:06d}", b"") for i in range(n)]
    later = [row("m1", b"x", meta='{"a":1}'), row("m2", b"y", executable=True)]
    data, top = hostile_manifest(base + later)
    m = read_manifest_bytes(data, top)
    assert len(m) == n + 2 and m.top_hash == top
    assert m.entry_metas[-2:] == ['{"a":1}', "{}"] and m.entry_metas[0] == "{}"
    assert list(m.executable_flags[-2:]) == [0, 1]
    bad, top = hostile_manifest(base + [("m1", "F" * 64, 1, False, "{}")])
    with pytest.raises(FormatError, match="hash of 'm1'"):
        read_manifest_bytes(bad, top)


@pytest.mark.parametrize("cut", [0, 4, 100, -8, -1])
def test_truncated_or_garbage_parquet(cut: int) -> None:
    data = manifest_to_bytes(_good())
    with pytest.raises(FormatError, match="Parquet manifest"):
        read_manifest_bytes(data[:cut] if cut else b"not parquet at all", _good().top_hash)


def test_missing_file_is_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot open"):
        read_manifest_file(str(tmp_path / "nope.parquet"), "0" * 64)
