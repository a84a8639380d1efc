"""The golden vectors of docs/FORMAT.md, read out of the document and checked against the code.

Every fenced block tagged ``golden=<vector>.<part>`` is parsed here, so the document
and the implementation cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gitquilt.manifest import Entry, Manifest, canonical_json
from gitquilt.manifest_io import META_KEY, manifest_to_bytes, read_manifest_bytes
from gitquilt.pointer import Pointer, package_name_for, parse_pointer
from tests.conftest import Repo

FORMAT_MD = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"
_BLOCK = re.compile(r"^```\w+ golden=(\w+)\.(\w+)\n(.*?)^```$", re.S | re.M)


def _blocks() -> dict[str, dict[str, bytes]]:
    vectors: dict[str, dict[str, bytes]] = {}
    for name, part, body in _BLOCK.findall(FORMAT_MD.read_text(encoding="utf-8")):
        assert part not in vectors.get(name, {}), f"golden={name}.{part} appears twice in FORMAT.md"
        vectors.setdefault(name, {})[part] = body.encode("utf-8")
    return vectors


VECTORS = _blocks()
NAMES = sorted(VECTORS)


def _input(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(VECTORS[name]["input"])
    return doc


def _content(f: dict[str, Any]) -> bytes:
    return bytes.fromhex(f["hex"]) if "hex" in f else f["text"].encode("utf-8")


def _manifest(name: str) -> Manifest:
    doc = _input(name)
    entries = [
        Entry(f["key"], hashlib.sha256(_content(f)).hexdigest(), len(_content(f)), f["executable"],
              canonical_json(f["meta"]))
        for f in doc["files"]
    ]
    return Manifest.from_entries(entries, doc["meta"])


def _top(name: str) -> str:
    return VECTORS[name]["top_hash"].decode().strip()


def test_document_has_the_promised_vectors() -> None:
    assert {"survey", "weights", "empty"} <= set(NAMES)
    for name in NAMES:
        assert set(VECTORS[name]) == {"input", "canonical", "top_hash", "pointer"}, name
    survey = _input("survey")
    assert len(survey["files"]) == 3
    assert any(f["executable"] for f in survey["files"])
    assert any(f["meta"] for f in survey["files"])
    assert survey["meta"]["message"]
    # the canonical block must keep its literal TABs (an editor turning them into spaces breaks it)
    assert b"\t" in VECTORS["survey"]["canonical"]


@pytest.mark.parametrize("name", NAMES)
def test_canonical_text_and_top_hash(name: str) -> None:
    documented = VECTORS[name]["canonical"]
    assert hashlib.sha256(documented).hexdigest() == _top(name), "FORMAT.md: canonical text and top hash disagree"
    m = _manifest(name)
    assert m.canonical_text() == documented
    assert m.top_hash == _top(name)


@pytest.mark.parametrize("name", NAMES)
def test_canonical_text_structure(name: str) -> None:
    """An independent reading of the spec: header, meta line, sorted TAB-separated entries."""
    lines = VECTORS[name]["canonical"].split(b"\n")
    assert lines[-1] == b""  # every line ends with \n
    assert lines[0] == b"gitquilt-manifest 1"
    tag, meta = lines[1].split(b"\t")
    assert tag == b"meta"
    assert json.loads(meta) == _input(name)["meta"]
    entries = [ln.split(b"\t") for ln in lines[2:-1]]
    keys = [e[0] for e in entries]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    files = {f["key"].encode(): f for f in _input(name)["files"]}
    assert set(keys) == set(files)
    for key, sha, size, flag, emeta in entries:
        f = files[key]
        assert sha.decode() == hashlib.sha256(_content(f)).hexdigest()
        assert int(size) == len(_content(f))
        assert flag == (b"x" if f["executable"] else b"-")
        assert json.loads(emeta) == f["meta"]


@pytest.mark.parametrize("name", NAMES)
def test_pointer_bytes(name: str) -> None:
    doc = _input(name)
    m = _manifest(name)
    path = package_name_for(doc["pointer"])
    documented = VECTORS[name]["pointer"]
    assert Pointer(path, m.top_hash, len(m), m.total_size).to_bytes() == documented
    p = parse_pointer(documented, doc["pointer"])
    assert (p.path, p.top_hash, p.files, p.bytes) == (path, _top(name), len(m), m.total_size)
    assert documented.endswith(b"\n") and not documented.endswith(b"\n\n")


@pytest.mark.parametrize("name", NAMES)
def test_parquet_round_trip(name: str) -> None:
    m = _manifest(name)
    data = manifest_to_bytes(m)
    table = pq.read_table(pa.BufferReader(data))
    assert table.schema.names == ["logical_key", "sha256", "size", "executable", "meta"]
    assert [str(t) for t in table.schema.types] == ["string", "string", "int64", "bool", "string"]
    assert table.schema.metadata[META_KEY] == canonical_json(_input(name)["meta"]).encode()
    assert b"gitquilt.required" not in table.schema.metadata
    back = read_manifest_bytes(data, _top(name))
    assert back.top_hash == _top(name)
    assert back.canonical_text() == VECTORS[name]["canonical"]
    assert list(back) == list(m)
    assert back.meta == _input(name)["meta"]


def test_cli_add_writes_the_documented_single_file_package(repo: Repo) -> None:
    """The real `git quilt add` produces the `weights` vector's pointer bytes and manifest."""
    doc = _input("weights")
    f = doc["files"][0]
    repo.write(f["key"], _content(f))
    repo.quilt("add", f["key"], "-m", doc["meta"]["message"], check=True)
    assert repo.read(doc["pointer"]) == VECTORS["weights"]["pointer"]
    stored = repo.root / ".git" / "quilt" / "manifests" / f"{_top('weights')}.parquet"
    assert read_manifest_bytes(stored.read_bytes(), _top("weights")).canonical_text() == VECTORS["weights"]["canonical"]


def test_cli_add_matches_the_format_for_a_directory(repo: Repo) -> None:
    """`git quilt add DIR -m … --meta …` gives the `survey` vector minus its entry metadata
    (which the CLI cannot set): same keys, hashes, sizes, executable bits and package meta."""
    doc = _input("survey")
    for f in doc["files"]:
        repo.write(f"survey/{f['key']}", _content(f), mode=0o755 if f["executable"] else 0o644)
    repo.quilt("add", "survey", "-m", doc["meta"]["message"], "--meta", json.dumps(doc["meta"]["user_meta"]),
               check=True)
    expected = Manifest.from_entries([e._replace(meta="{}") for e in _manifest("survey")], doc["meta"])
    pointer = parse_pointer(repo.read("survey.quilt"), "survey.quilt")
    assert pointer.top_hash == expected.top_hash
    assert repo.read("survey.quilt") == Pointer("survey", expected.top_hash, 3, 50).to_bytes()
