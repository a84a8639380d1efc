"""Parquet encoding of manifests: the only module that imports pyarrow (besides asa/).

Reading validates everything before a manifest is handed out: schema, every key
(DESIGN.md "Logical keys"), hash syntax, sizes, order, canonical JSON, and the top
hash recomputed from the columns, which must equal the name the file was asked for.
The checks are vectorised so that a million entries load in well under a second.
"""

from __future__ import annotations

import binascii
import bisect
import contextlib
import hashlib
import io
import json
import re
from array import array
from collections.abc import Generator, Iterable
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from gitquilt.digest import check_digest
from gitquilt.errors import FormatError, IntegrityError, UnsafePath, UnsupportedFormat
from gitquilt.keys import check_key
from gitquilt.manifest import EMPTY_META, HEADER, PARQUET_META_KEY, Manifest, canonical_json, check_canonical_json


class _LazyCompute:
    """``pyarrow.compute``, imported on first use: only readers need it, and its import
    (~30 ms) would otherwise be paid by every ``add``, which only writes."""

    def __getattr__(self, name: str) -> Any:
        import pyarrow.compute

        globals()["pc"] = pyarrow.compute
        return getattr(pyarrow.compute, name)


pc: Any = _LazyCompute()

META_KEY = PARQUET_META_KEY
REQUIRED_KEY = b"gitquilt.required"
#: Features a reader must understand; a file naming any other is from a newer gitquilt.
KNOWN_FEATURES: frozenset[str] = frozenset()

SCHEMA = pa.schema(
    [
        ("logical_key", pa.string()),
        ("sha256", pa.string()),
        ("size", pa.int64()),
        ("executable", pa.bool_()),
        ("meta", pa.string()),
    ]
)

# A key matching no part of _NEEDS_CHECK (and at most 255 bytes) is printable ASCII
# without ':', "git", a backslash, or an empty, '.' or '..' segment: valid by
# construction, as in keys.check_key's own fast path. Every key that matches, the
# suspicious (non-printable, a possible .git look-alike, ':') and the malformed alike,
# gets the full Python check_key: one regex pass over the column. _BAD_STRUCTURE then
# guards against check_key and these patterns ever disagreeing.
_BAD_STRUCTURE = r"(^$|^/|//|/$|(^|/)\.\.?(/|$)|\\|[\x00-\x1f\x7f]|^[A-Za-z]:)"
_BAD_STRUCTURE_RE = re.compile(_BAD_STRUCTURE)
_NEEDS_CHECK = r"[^\x20-\x7e]|[gG][iI][tT]|:|^$|^/|//|/$|(^|/)\.\.?(/|$)|\\"
_HEX64 = r"^[0-9a-f]{64}$"
#: Rows decoded and validated at a time.
BATCH_ROWS = 1 << 16


def manifest_to_bytes(manifest: Manifest) -> bytes:
    """Encode a manifest as Parquet (zstd)."""
    n = len(manifest)
    metas = manifest.entry_metas
    table = pa.Table.from_arrays(
        [
            pa.array(manifest.keys, pa.string()),
            pa.array([manifest.sha256(i) for i in range(n)], pa.string()),
            pa.array(manifest.sizes, pa.int64()),
            pa.array([bool(b) for b in manifest.executable_flags], pa.bool_()),
            pa.array(metas if metas is not None else [EMPTY_META] * n, pa.string()),
        ],
        schema=SCHEMA.with_metadata({META_KEY: canonical_json(manifest.meta).encode()}),
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=1 << 16, use_dictionary=["meta"])
    return sink.getvalue()


def _column(batch: pa.RecordBatch, name: str, typ: pa.DataType, where: str) -> pa.Array:
    col = batch.column(name)
    if col.type == pa.large_string() and typ == pa.string():
        col = col.cast(pa.string())
    if col.type != typ:
        raise FormatError(f"{where}: column {name!r} has type {col.type}, expected {typ}")
    if col.null_count:
        raise FormatError(f"{where}: column {name!r} has missing values")
    return col


def _values_bytes(arr: pa.Array) -> memoryview:
    """The concatenated UTF-8 bytes of a (non-null) string array, without copying."""
    arr = arr.cast(pa.large_string())
    offsets = arr.buffers()[1]
    data = arr.buffers()[2]
    off = memoryview(offsets).cast("q") if offsets is not None else None
    if data is None or off is None or len(arr) == 0:
        return memoryview(b"")
    start = off[arr.offset]
    end = off[arr.offset + len(arr)]
    return memoryview(data)[start:end]


def _first_bad(mask: pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def read_manifest_bytes(data: bytes, expected_top_hash: str, where: str = "manifest") -> Manifest:
    """Decode and fully validate a Parquet manifest whose name is ``expected_top_hash``."""
    return _read(pa.BufferReader(data), expected_top_hash, where)


def read_manifest_file(path: str, expected_top_hash: str, where: str = "manifest") -> Manifest:
    """Like :func:`read_manifest_bytes`, memory-mapping the file at ``path``."""
    with _memory_map(path, f"{where} {expected_top_hash[:12]}") as source:
        return _read(source, expected_top_hash, where)


def _memory_map(path: str, where: str) -> pa.MemoryMappedFile:
    try:
        return pa.memory_map(path, "r")
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(f"{where}: cannot open {path}: {exc}") from None


class _Columns:
    """Accumulates validated columns batch by batch."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.digests = bytearray()
        self.sizes = array("q")
        self.execs = bytearray()
        self.metas: list[str] | None = None
        self.parents: set[str] = set()


def _read(source: Any, expected_top_hash: str, where: str) -> Manifest:
    where = f"{where} {expected_top_hash[:12]}"
    pf, kv = _open_parquet(source, SCHEMA, "manifest", where)
    if META_KEY not in kv:
        raise FormatError(f"{where}: missing package metadata '{META_KEY.decode()}'")
    try:
        meta_text = kv[META_KEY].decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{where}: package metadata is not UTF-8") from None
    check_canonical_json(meta_text, f"{where}: package metadata")
    meta: dict[str, Any] = json.loads(meta_text)

    h = hashlib.sha256(HEADER)
    h.update(f"meta\t{meta_text}\n".encode())
    cols = _Columns()
    try:
        batches = pf.iter_batches(batch_size=BATCH_ROWS, columns=SCHEMA.names, use_threads=True)
        big = pf.metadata.num_rows > BATCH_ROWS
        checked_batches = _checked_ahead(batches, where) if big else (_check_batch(b, where) for b in batches)
        with contextlib.closing(checked_batches):
            for checked in checked_batches:
                if checked is not None:
                    _apply_batch(checked, cols, h, where)
                if big:  # hand each batch's buffers back, or the peak grows by ~25 %
                    pa.default_memory_pool().release_unused()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FormatError(f"{where}: damaged Parquet manifest ({str(exc).splitlines()[0][:120]})") from None
    _check_file_dir_clash(cols.keys, cols.parents, where)
    top = h.hexdigest()
    if top != expected_top_hash:
        raise IntegrityError(
            f"{where}: content hashes to {top}, not to its name {expected_top_hash}: refusing it"
        )
    return Manifest(cols.keys, bytes(cols.digests), cols.sizes, cols.execs, cols.metas, meta, top_hash=top)


def _checked_ahead(batches: Iterable[pa.RecordBatch], where: str) -> Generator[_Checked | None, None, None]:
    """:func:`_check_batch` of each batch, in order, for a large manifest: one thread
    checks batch i+1 while the caller adds batch i (the checks run in pyarrow's kernels
    without the GIL; adding is Python). At most two batches are held."""
    from concurrent.futures import Future, ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="gitquilt-manifest") as checker:
        ahead: Future[_Checked | None] | None = None
        for batch in batches:
            nxt = checker.submit(_check_batch, batch, where)
            if ahead is not None:
                yield ahead.result()
            ahead = nxt
        if ahead is not None:
            yield ahead.result()


def _open_parquet(source: Any, schema: pa.Schema, what: str, where: str) -> tuple[pq.ParquetFile, dict[bytes, bytes]]:
    """Open a Parquet file of ours: readable, no feature this version lacks, ``schema``'s
    columns with their types (large strings taken for strings). Returns it and its metadata."""
    try:
        pf = pq.ParquetFile(source)
        kv = pf.schema_arrow.metadata or {}
        found = pf.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FormatError(f"{where}: not a readable Parquet {what} ({str(exc).splitlines()[0][:120]})") from None
    required = kv.get(REQUIRED_KEY, b"").decode("utf-8", "replace")
    unknown = sorted(set(filter(None, required.split(","))) - KNOWN_FEATURES)
    if unknown:
        raise UnsupportedFormat(
            f"{where} needs features {', '.join(unknown)} that this gitquilt lacks: upgrade gitquilt"
        )
    for field in schema:
        if field.name not in found.names:
            raise FormatError(f"{where}: missing column {field.name!r}")
        typ = found.field(field.name).type
        if typ != field.type and not (field.type == pa.string() and typ == pa.large_string()):
            raise FormatError(f"{where}: column {field.name!r} has type {typ}, expected {field.type}")
    return pf, kv


class _Checked(NamedTuple):
    """One batch, validated on its own and encoded: what :func:`_apply_batch` adds in order."""

    keys: list[str]
    digests: bytes
    sizes: bytes
    execs: bytes
    metas: list[str] | None  # None: every entry's meta is empty
    parents: list[str]
    lines: pa.Array  # the batch's canonical text lines (for the top hash)


def _check_batch(batch: pa.RecordBatch, where: str) -> _Checked | None:
    """Validate one batch by itself and encode what the manifest keeps (None if empty).

    Nearly all of it runs in pyarrow's compute kernels, which release the GIL, so a
    thread checks the next batch while the caller adds this one (:func:`_checked_ahead`)."""
    keys, sha, size, execs, metas = (_column(batch, f.name, f.type, where) for f in SCHEMA)
    n = len(keys)
    if not n:
        return None
    raw_digests = _digests(sha)
    if raw_digests is None:  # the slow way, to name the first bad hash
        i = _first_bad(pc.invert(pc.match_substring_regex(sha, _HEX64)))
        if i >= 0:
            check_digest(sha[i].as_py(), f"{where}: hash of {keys[i].as_py()!r}")
        raise FormatError(f"{where}: invalid sha256 column")  # the two checks disagree: refuse all the same
    if pc.min(size).as_py() < 0:
        i = _first_bad(pc.less(size, 0))
        raise FormatError(f"{where}: negative size for {keys[i].as_py()!r}")
    _check_keys(keys, where)
    parents: list[str] = []
    nested = pc.filter(keys, pc.match_substring(keys, "/"))
    if len(nested):
        parents = pc.unique(pc.list_element(pc.split_pattern(nested, "/", max_splits=1, reverse=True), 0)).to_pylist()
    nonempty = pc.not_equal(metas, EMPTY_META)
    meta_list: list[str] | None = None
    if pc.any(nonempty).as_py():
        for text in pc.filter(metas, nonempty).to_pylist():
            check_canonical_json(text, f"{where}: entry meta")
        meta_list = metas.to_pylist()
    lines = pc.binary_join_element_wise(
        keys,
        sha,
        pc.cast(size, pa.string()),
        pc.if_else(execs, "x", "-"),
        pc.binary_join_element_wise(metas, "\n", ""),
        "\t",
    )
    return _Checked(
        keys.to_pylist(), raw_digests,
        size.to_numpy(zero_copy_only=False).astype("<i8").tobytes(),
        execs.to_numpy(zero_copy_only=False).astype("uint8").tobytes(),
        meta_list, parents, lines,
    )


def _apply_batch(checked: _Checked, cols: _Columns, h: "hashlib._Hash", where: str) -> None:
    """Add a checked batch to the manifest being read, in file order."""
    if cols.keys and cols.keys[-1].encode() >= checked.keys[0].encode():
        _order_error(cols.keys[-1], checked.keys[0], where)
    cols.parents.update(checked.parents)
    if checked.metas is not None and cols.metas is None:
        cols.metas = [EMPTY_META] * len(cols.keys)
    if cols.metas is not None:
        cols.metas.extend(checked.metas if checked.metas is not None else [EMPTY_META] * len(checked.keys))
    h.update(_values_bytes(checked.lines))
    cols.keys.extend(checked.keys)
    cols.digests += checked.digests
    cols.sizes.frombytes(checked.sizes)
    cols.execs += checked.execs


def _order_error(a: str, b: str, where: str) -> None:
    if a == b:
        raise UnsafePath(f"{where}: duplicate logical key {a!r}: the manifest is corrupt")
    raise UnsafePath(f"{where}: logical keys out of order ({a!r} before {b!r}): the manifest is corrupt")


def _check_file_dir_clash(keys: list[str], direct_parents: set[str], where: str) -> None:
    """Refuse a key that is also another key's directory; keys are sorted, so bisect."""
    parents: set[str] = set()
    for p in direct_parents:
        while p and p not in parents:
            parents.add(p)
            p = p.rpartition("/")[0]
    for p in sorted(parents):
        i = bisect.bisect_left(keys, p)
        if i < len(keys) and keys[i] == p:
            raise UnsafePath(f"{where}: logical key {p!r} is both a file and a directory: the manifest is corrupt")


def _digests(sha: pa.Array) -> bytes | None:
    """The raw 32-byte digests of a column of 64-character lowercase hex, else None.

    Cheaper than a regex over the column: lengths, then lower case (``unhexlify``
    accepts upper case, the format does not), then ``unhexlify`` rejects non-hex.
    """
    if pc.min_max(pc.binary_length(sha)).as_py() != {"min": 64, "max": 64}:
        return None
    if not pc.all(pc.equal(pc.ascii_lower(sha), sha)).as_py():
        return None
    try:
        return binascii.unhexlify(_values_bytes(sha))
    except (binascii.Error, ValueError):
        return None


def _check_keys(keys: pa.Array, where: str) -> None:
    check = pc.or_(pc.match_substring_regex(keys, _NEEDS_CHECK), pc.greater(pc.binary_length(keys), 255))
    if pc.any(check).as_py():
        for key in pc.filter(keys, check).to_pylist():
            try:
                check_key(key)
            except UnsafePath as exc:
                raise UnsafePath(f"{where}: {exc}") from None
            if _BAD_STRUCTURE_RE.search(key):  # the pattern and check_key disagree: refuse all the same
                raise UnsafePath(f"{where}: invalid logical key {key!r}")
    if len(keys) > 1:
        ordered = pc.less(keys.slice(0, len(keys) - 1), keys.slice(1))
        if not pc.all(ordered).as_py():
            i = _first_bad(pc.invert(ordered))
            _order_error(keys[i].as_py(), keys[i + 1].as_py(), where)




# -- pack indexes (docs/FORMAT.md "Packs") --------------------------------------------------
PACK_ID_KEY = b"gitquilt.pack"
PACK_SIZE_KEY = b"gitquilt.pack_size"
PACK_INDEX_SCHEMA = pa.schema([("sha256", pa.string()), ("offset", pa.int64()), ("length", pa.int64())])
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


class PackIndexColumns(NamedTuple):
    """A validated pack index, column by column (``gitquilt.packs.PackIndex`` wraps it)."""

    pack_id: str
    pack_size: int
    digests: bytes  # 32 raw bytes per row
    offsets: "array[int]"  # array("q")
    lengths: "array[int]"


def pack_index_to_bytes(rows: Iterable[tuple[str, int, int]], pack_id: str, pack_size: int) -> bytes:
    """Encode a pack's index (rows of sha256, offset, length, in offset order) as Parquet.

    The rows are checked by the rules a reader applies, so a bug cannot upload an
    index that every reader would refuse.
    """
    check_digest(pack_id, "pack id")
    shas: list[str] = []
    offsets: list[int] = []
    lengths: list[int] = []
    for sha, offset, length in rows:
        shas.append(sha)
        offsets.append(offset)
        lengths.append(length)
    where = f"pack index {pack_id[:12]}"
    if not 0 <= pack_size < 1 << 63:
        raise FormatError(f"{where}: invalid pack size {pack_size}")
    try:
        table = pa.Table.from_arrays(
            [pa.array(shas, pa.string()), pa.array(offsets, pa.int64()), pa.array(lengths, pa.int64())],
            schema=PACK_INDEX_SCHEMA.with_metadata({PACK_ID_KEY: pack_id.encode(), PACK_SIZE_KEY: str(pack_size).encode()}),
        )
    except (pa.ArrowException, TypeError, OverflowError) as exc:
        raise FormatError(f"{where}: cannot encode rows ({str(exc).splitlines()[0][:120]})") from None
    sha, offsets, lengths = (_table_column(table, f.name, f.type) for f in PACK_INDEX_SCHEMA)
    _check_pack_columns(sha, offsets, lengths, pack_size, where)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=1 << 16, use_dictionary=False)
    return sink.getvalue()


def read_pack_index_bytes(data: bytes, pack_id: str, where: str = "pack index") -> PackIndexColumns:
    """Decode and fully validate the index of the pack named ``pack_id`` (FormatError if hostile)."""
    return _read_pack_index(pa.BufferReader(data), pack_id, where)


def read_pack_index_file(path: str, pack_id: str, where: str = "pack index") -> PackIndexColumns:
    """Like :func:`read_pack_index_bytes`, memory-mapping the file at ``path``."""
    check_digest(pack_id, "pack id")
    with _memory_map(path, f"{where} {pack_id[:12]}") as source:
        return _read_pack_index(source, pack_id, where)


def _read_pack_index(source: Any, pack_id: str, where: str) -> PackIndexColumns:
    check_digest(pack_id, "pack id")
    where = f"{where} {pack_id[:12]}"
    pf, kv = _open_parquet(source, PACK_INDEX_SCHEMA, "pack index", where)
    named = kv.get(PACK_ID_KEY)
    if named is None:
        raise FormatError(f"{where}: missing '{PACK_ID_KEY.decode()}' metadata")
    if named != pack_id.encode():
        shown = named[:64].decode("utf-8", "replace")
        raise FormatError(f"{where}: describes pack {shown!r}, not the pack it is named after: refusing it")
    size_text = kv.get(PACK_SIZE_KEY, b"").decode("ascii", "replace")
    if not _DECIMAL.fullmatch(size_text) or int(size_text) >= 1 << 63:
        raise FormatError(f"{where}: invalid '{PACK_SIZE_KEY.decode()}' metadata {size_text[:40]!r}")
    pack_size = int(size_text)
    try:
        table = pf.read(columns=PACK_INDEX_SCHEMA.names, use_threads=False)
        sha, offsets, lengths = (_table_column(table, f.name, f.type) for f in PACK_INDEX_SCHEMA)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FormatError(f"{where}: damaged Parquet pack index ({str(exc).splitlines()[0][:120]})") from None
    _check_pack_columns(sha, offsets, lengths, pack_size, where)
    return PackIndexColumns(
        pack_id,
        pack_size,
        binascii.unhexlify(_values_bytes(sha)),
        array("q", offsets.to_numpy(zero_copy_only=False).astype("<i8").tobytes()),
        array("q", lengths.to_numpy(zero_copy_only=False).astype("<i8").tobytes()),
    )


def _table_column(table: pa.Table, name: str, typ: pa.DataType) -> pa.Array:
    col = table.column(name).combine_chunks()
    if col.type == pa.large_string() and typ == pa.string():
        col = col.cast(pa.string())
    return col


def _check_pack_columns(sha: pa.Array, offsets: pa.Array, lengths: pa.Array, pack_size: int, where: str) -> None:
    """The index rules: hashes, lengths >= 0, fragments back to back from 0 to the pack size, no duplicate."""
    for name, col in (("sha256", sha), ("offset", offsets), ("length", lengths)):
        if col.null_count:
            raise FormatError(f"{where}: column {name!r} has missing values")
    n = len(sha)
    if n == 0:
        raise FormatError(f"{where}: lists no fragments")
    bad_hash = pc.invert(pc.match_substring_regex(sha, _HEX64))
    if pc.any(bad_hash).as_py():
        value = sha[_first_bad(bad_hash)].as_py()
        raise FormatError(f"{where}: fragment hash {value[:80]!r} is not 64 lowercase hex characters")
    if pc.min(lengths).as_py() < 0:
        i = _first_bad(pc.less(lengths, 0))
        raise FormatError(f"{where}: negative length {lengths[i].as_py()} for fragment {sha[i].as_py()}")
    if pc.max(lengths).as_py() > pack_size or pc.max(offsets).as_py() > pack_size or pc.min(offsets).as_py() < 0:
        bad = pc.or_(pc.greater(lengths, pack_size), pc.or_(pc.greater(offsets, pack_size), pc.less(offsets, 0)))
        i = _first_bad(bad)
        raise FormatError(
            f"{where}: fragment {sha[i].as_py()} at offset {offsets[i].as_py()} length {lengths[i].as_py()}"
            f" lies outside the pack ({pack_size} bytes)"
        )
    try:
        ends = pc.add_checked(offsets, lengths)
    except pa.ArrowInvalid:  # both <= pack_size < 2**63, yet their sum can still pass 2**63
        raise FormatError(f"{where}: a fragment ends beyond the pack ({pack_size} bytes)") from None
    if offsets[0].as_py() != 0:
        raise FormatError(f"{where}: first fragment starts at offset {offsets[0].as_py()}, not 0")
    if n > 1:
        joined = pc.equal(offsets.slice(1), ends.slice(0, n - 1))
        if not pc.all(joined).as_py():
            i = _first_bad(pc.invert(joined)) + 1
            raise FormatError(
                f"{where}: fragment {sha[i].as_py()} starts at offset {offsets[i].as_py()}, "
                f"not where the one before it ends ({ends[i - 1].as_py()}): fragments must lie back to back"
            )
    if ends[n - 1].as_py() != pack_size:
        raise FormatError(f"{where}: fragments end at byte {ends[n - 1].as_py()}, but the pack holds {pack_size}")
    if pc.count_distinct(sha).as_py() != n:
        counts = pc.value_counts(sha)
        dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))[0].as_py()
        raise FormatError(f"{where}: fragment {dup} is listed twice")
