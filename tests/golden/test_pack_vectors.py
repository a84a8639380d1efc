"""The pack golden vector of docs/FORMAT.md ("Packs"), read out of the document and checked.

Blocks tagged ``pack-vector=<vector>.<part>`` hold the input fragments, the pack's bytes
in hex, its id and its index rows; the code must reproduce each of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gitquilt.manifest_io import pack_index_to_bytes, read_pack_index_bytes
from gitquilt.packcache import encode_index
from gitquilt.packplan import check_pack, plan_fetch, split_range
from gitquilt.packs import PackIndex, build_packs, bytes_opener

FORMAT_MD = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"
_BLOCK = re.compile(r"^```\w+ pack-vector=(\w+)\.(\w+)\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def _vectors() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, part, body in _BLOCK.findall(FORMAT_MD.read_text(encoding="utf-8")):
        assert part not in out.get(name, {}), f"pack-vector={name}.{part} appears twice"
        out.setdefault(name, {})[part] = body
    return out


TINY = _vectors()["tiny"]
FRAGMENTS = [f["text"].encode("utf-8") for f in json.loads(TINY["input"])]
PACK = bytes.fromhex(TINY["pack_hex"].strip())
PACK_ID = TINY["pack_id"].strip()
ROWS = [(d, int(o), int(n)) for d, o, n in (line.split("\t") for line in TINY["rows"].splitlines())]


def test_document_holds_the_vector() -> None:
    assert set(TINY) == {"input", "pack_hex", "pack_id", "rows"}
    assert len(FRAGMENTS) == 3 and b"" in FRAGMENTS
    assert "\t" in TINY["rows"]  # literal TABs, as the text says


def test_the_documented_bytes_agree_with_each_other() -> None:
    """An independent reading of the spec: the pack is the fragments back to back, named by its hash."""
    assert PACK == b"".join(FRAGMENTS)
    assert hashlib.sha256(PACK).hexdigest() == PACK_ID
    offset = 0
    for (digest, off, length), frag in zip(ROWS, FRAGMENTS, strict=True):
        assert (digest, off, length) == (hashlib.sha256(frag).hexdigest(), offset, len(frag))
        assert PACK[off: off + length] == frag
        offset += length
    assert offset == len(PACK)


def test_the_writer_builds_the_documented_pack(tmp_path: Path) -> None:
    src = [(hashlib.sha256(f).hexdigest(), len(f), bytes_opener(f)) for f in FRAGMENTS]
    (pack,) = build_packs(src, tmp_path)
    assert pack.path.read_bytes() == PACK and pack.pack_id == PACK_ID and pack.size == len(PACK)
    assert [tuple(e) for e in pack.index] == ROWS


def test_the_index_file_carries_the_documented_rows_and_metadata() -> None:
    data = pack_index_to_bytes(ROWS, PACK_ID, len(PACK))
    table = pq.read_table(pa.BufferReader(data))
    assert table.schema.names == ["sha256", "offset", "length"]
    assert [str(t) for t in table.schema.types] == ["string", "int64", "int64"]
    assert table.schema.metadata == {b"gitquilt.pack": PACK_ID.encode(), b"gitquilt.pack_size": b"14"}
    assert list(zip(*(table.column(c).to_pylist() for c in table.schema.names), strict=True)) == ROWS
    index = PackIndex(*read_pack_index_bytes(data, PACK_ID))
    assert encode_index(index) == data  # same rows, same metadata, same encoder
    assert check_pack(io.BytesIO(PACK), index).ok


def test_readers_get_the_fragments_back() -> None:
    index = PackIndex.from_entries(PACK_ID, len(PACK), ROWS)
    plan = plan_fetch([d for d, _, _ in ROWS], {PACK_ID: index})
    got = {d: b"" for d in plan.local}
    for read in plan.reads:
        for rng in read.ranges:
            got.update(split_range(io.BytesIO(PACK[rng.start:rng.end]), PACK_ID, rng))
    assert got == {hashlib.sha256(f).hexdigest(): f for f in FRAGMENTS}
