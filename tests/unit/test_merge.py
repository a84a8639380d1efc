"""gitquilt.ops.merge: per-key three-way merge of manifests and pointers."""

from __future__ import annotations

import hashlib

import pytest

from gitquilt.errors import FormatError, NotFound
from gitquilt.manifest import Entry, Manifest
from gitquilt.ops import merge
from gitquilt.ops.workspace import Workspace
from gitquilt.pointer import MAX_POINTER_BYTES, Pointer, parse_pointer
from tests.conftest import Repo


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def m(files: dict[str, str], meta: dict[str, object] | None = None) -> Manifest:
    return Manifest.from_entries([Entry(k, h(v), len(v)) for k, v in files.items()], meta or {})


def as_dict(man: Manifest) -> dict[str, str]:
    return {e.key: e.sha256 for e in man}


def test_edits_of_different_files_merge_cleanly() -> None:
    base = m({"a": "1", "b": "1", "c": "1", "d": "1"})
    ours = m({"a": "2", "b": "1", "c": "1", "d": "1", "new_ours": "x"})
    theirs = m({"a": "1", "b": "2", "d": "1", "new_theirs": "y"})  # c deleted by theirs
    merged, conflicts, _ = merge.merge_manifests(base, ours, theirs)
    assert conflicts == []
    assert as_dict(merged) == {"a": h("2"), "b": h("2"), "d": h("1"), "new_ours": h("x"), "new_theirs": h("y")}


def test_same_change_on_both_sides_is_not_a_conflict() -> None:
    base = m({"a": "1"})
    both = m({"a": "2", "z": "9"})
    merged, conflicts, _ = merge.merge_manifests(base, both, m({"a": "2", "z": "9"}))
    assert conflicts == [] and as_dict(merged) == as_dict(both)


@pytest.mark.parametrize(
    "ours,theirs",
    [
        ({"a": "2"}, {"a": "3"}),  # both edited
        ({"a": "2"}, {}),  # edit against delete
        ({}, {"a": "3"}),  # delete against edit
    ],
)
def test_different_changes_to_one_file_conflict_and_keep_ours(ours: dict[str, str], theirs: dict[str, str]) -> None:
    base = m({"a": "1", "keep": "k"})
    o = m({**ours, "keep": "k"})
    t = m({**theirs, "keep": "k"})
    merged, conflicts, _ = merge.merge_manifests(base, o, t)
    assert conflicts == ["a"]
    assert as_dict(merged) == as_dict(o)


def test_executable_bit_change_counts_as_a_change() -> None:
    base = m({"run.sh": "x"})
    ours = Manifest.from_entries([Entry("run.sh", h("x"), 1, True)], {})
    merged, conflicts, _ = merge.merge_manifests(base, ours, base)
    assert conflicts == [] and merged.entry(0).executable


def test_add_add_without_base() -> None:
    merged, conflicts, _ = merge.merge_manifests(None, m({"a": "1", "s": "s"}), m({"b": "2", "s": "s"}))
    assert conflicts == [] and sorted(as_dict(merged)) == ["a", "b", "s"]
    _, conflicts, _ = merge.merge_manifests(None, m({"a": "1"}), m({"a": "2"}))
    assert conflicts == ["a"]


def test_file_directory_clash_is_a_conflict() -> None:
    base = m({"x": "0"})
    ours = m({"x": "0", "a": "1"})
    theirs = m({"x": "0", "a/b": "2"})
    merged, conflicts, _ = merge.merge_manifests(base, ours, theirs)
    assert conflicts and "layout" in conflicts[0]
    assert merged.top_hash == ours.top_hash


def test_meta_merge_joins_messages_and_conflicts_on_user_meta() -> None:
    meta, conflicts, notes = merge.merge_meta({"message": "v1"}, {"message": "ours"}, {"message": "theirs"})
    assert meta == {"message": "ours + theirs"} and conflicts == [] and notes
    meta, conflicts, _ = merge.merge_meta({}, {"user_meta": {"v": 1}}, {"user_meta": {"v": 2}})
    assert conflicts == ["meta:user_meta"] and meta == {"user_meta": {"v": 1}}
    meta, conflicts, _ = merge.merge_meta({"user_meta": {"v": 1}}, {"user_meta": {"v": 1}}, {"user_meta": {"v": 2}})
    assert conflicts == [] and meta == {"user_meta": {"v": 2}}


def _pointer(ws: Workspace, man: Manifest, name: str = "images") -> bytes:
    top = ws.cache.put_manifest(man)
    return Pointer(name, top, len(man), man.total_size).to_bytes()


def test_merge_pointers_stores_the_merged_manifest(repo: Repo) -> None:
    ws = Workspace.open(repo.root)
    base, ours, theirs = m({"a": "1", "b": "1"}), m({"a": "2", "b": "1"}), m({"a": "1", "b": "2"})
    r = merge.merge_pointers(ws, _pointer(ws, base), _pointer(ws, ours), _pointer(ws, theirs), "images.quilt")
    assert r.how == "merged" and r.clean
    p = parse_pointer(r.text, "images.quilt")
    assert as_dict(ws.cache.read_manifest(p.top_hash)) == {"a": h("2"), "b": h("2")}
    assert r.text == p.to_bytes()


def test_merge_pointers_trivial_cases_need_no_manifest(repo: Repo) -> None:
    ws = Workspace.open(repo.root)
    a = Pointer("images", h("A"), 1, 1).to_bytes()
    b = Pointer("images", h("B"), 1, 1).to_bytes()
    assert merge.merge_pointers(ws, a, a, b, "images.quilt").text == b  # only theirs changed
    assert merge.merge_pointers(ws, a, b, a, "images.quilt").text == b  # only ours changed
    assert merge.merge_pointers(ws, a, b, b, "images.quilt").how == "same"
    with pytest.raises(NotFound, match="not in the cache"):
        merge.merge_pointers(ws, a, b, Pointer("images", h("C"), 1, 1).to_bytes(), "images.quilt")


def test_conflict_pointer_is_valid_names_both_sides_and_fits_the_cap(repo: Repo) -> None:
    ws = Workspace.open(repo.root)
    n = 400
    base = m({f"file_{i:04d}_with_a_long_name.bin": "1" for i in range(n)} | {"other": "1"})
    ours = m({f"file_{i:04d}_with_a_long_name.bin": "2" for i in range(n)} | {"other": "1"})
    theirs = m({f"file_{i:04d}_with_a_long_name.bin": "3" for i in range(n)} | {"other": "3"})
    r = merge.merge_pointers(ws, _pointer(ws, base), _pointer(ws, ours), _pointer(ws, theirs), "images.quilt")
    assert r.how == "conflict" and len(r.conflicts) == n
    assert len(r.text) <= MAX_POINTER_BYTES
    text = r.text.decode()
    assert ours.top_hash in text and theirs.top_hash in text and "and " in text and "more" in text
    p = parse_pointer(r.text, "images.quilt")  # still a valid pointer: the clean part is checkout-able
    merged = ws.cache.read_manifest(p.top_hash)
    assert merged.get("other").sha256 == h("3")  # type: ignore[union-attr]
    assert merged.get("file_0000_with_a_long_name.bin").sha256 == h("2")  # type: ignore[union-attr]


def test_merge_pointers_refuses_malformed_side(repo: Repo) -> None:
    ws = Workspace.open(repo.root)
    good = Pointer("images", h("A"), 1, 1).to_bytes()
    with pytest.raises(FormatError, match="their version"):
        merge.merge_pointers(ws, good, good, b"<<<<<<< not a pointer", "images.quilt")
    with pytest.raises(FormatError, match="no pointer"):
        merge.merge_pointers(ws, good, good, b"", "images.quilt")
