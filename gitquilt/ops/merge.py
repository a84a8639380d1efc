"""Three-way merge of package pointers (what ``git quilt merge-driver`` does).

git hands the driver three pointer files: the merge base (O), ours (A) and theirs (B).
Their manifests are merged per logical key: a key changed on one side only takes that
side; a key changed identically on both sides takes either; a key changed differently
on both sides (including edit against delete) is a conflict. The result is a new
manifest stored in the cache and a new pointer to it.

On a conflict the pointer still names a merged manifest — every clean change applied,
and *our* version of each conflicting file — preceded by comment lines that list the
conflicting files and both sides' top hashes (docs/merging.md). This mirrors what git
does for binary files (keep ours, report the conflict); theirs stays retrievable from
its top hash and from git's index stage 3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gitquilt.errors import FormatError, NotFound, QuiltError, UnsafePath
from gitquilt.manifest import Entry, Manifest
from gitquilt.ops.workspace import Workspace
from gitquilt.pointer import MAX_POINTER_BYTES, Pointer, parse_pointer

#: Fetches manifests (by top hash) from a remote into the cache.
ManifestFetcher = Callable[[list[str]], None]
KIND_META = "gitquilt.kind"
MESSAGE_META = "message"


@dataclass
class MergeResult:
    """The outcome of merging one pointer."""

    path: str  # the pointer's path in the repository
    pointer: Pointer  # what to write (the merged package, ours for conflicting files)
    text: bytes  # the bytes to leave in %A
    ours: str
    theirs: str
    base: str | None
    how: str  # "same", "ours", "theirs", "merged" or "conflict"
    conflicts: list[str] = field(default_factory=list)  # keys (or "meta:<name>") in conflict
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.conflicts


def _same(a: Entry | None, b: Entry | None) -> bool:
    return a == b


def merge_entries(
    base: Manifest | None, ours: Manifest, theirs: Manifest
) -> tuple[list[Entry], list[str]]:
    """Merge three manifests key by key: (merged entries, conflicting keys).

    A conflicting key keeps our entry (or stays deleted if we deleted it).
    """
    b_map = {e.key: e for e in base} if base is not None else {}
    o_map = {e.key: e for e in ours}
    t_map = {e.key: e for e in theirs}
    merged: list[Entry] = []
    conflicts: list[str] = []
    for key in sorted(set(b_map) | set(o_map) | set(t_map), key=lambda k: k.encode("utf-8", "surrogatepass")):
        b, o, t = b_map.get(key), o_map.get(key), t_map.get(key)
        if _same(o, t) or _same(t, b):
            pick = o
        elif _same(o, b):
            pick = t
        else:
            conflicts.append(key)
            pick = o
        if pick is not None:
            merged.append(pick)
    return merged, conflicts


def merge_meta(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Merge package metadata per top-level key: (meta, conflicting names, notes).

    Differing messages are not a conflict: both are kept, joined by `` + ``. A different
    package kind (file against directory) or different user metadata is a conflict.
    """
    out: dict[str, Any] = {}
    conflicts: list[str] = []
    notes: list[str] = []
    missing = object()
    for name in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(name, missing), ours.get(name, missing), theirs.get(name, missing)
        if o == t or t == b:
            pick = o
        elif o == b:
            pick = t
        elif name == MESSAGE_META:
            pick = " + ".join(str(x) for x in (o, t) if x is not missing)
            notes.append(f"package messages differ; the merge keeps both: {pick!r}")
        else:
            conflicts.append(f"meta:{name}")
            pick = o
        if pick is not missing:
            out[name] = pick
    return out, conflicts, notes


def merge_manifests(base: Manifest | None, ours: Manifest, theirs: Manifest) -> tuple[Manifest, list[str], list[str]]:
    """(merged manifest, conflicts, notes); on conflict the manifest holds our side of them."""
    entries, conflicts = merge_entries(base, ours, theirs)
    meta, meta_conflicts, notes = merge_meta(base.meta if base is not None else {}, ours.meta, theirs.meta)
    conflicts += meta_conflicts
    try:
        merged = Manifest.from_entries(entries, meta)
    except (UnsafePath, FormatError) as exc:
        # e.g. one side added the file `a`, the other `a/b`: no single tree holds both
        conflicts.append(f"(layout: {exc})")
        merged = ours
    if merged.meta.get(KIND_META) == "file" and len(merged) != 1:
        conflicts.append("(a single-file package cannot hold several files)")
        merged = ours
    return merged, conflicts, notes


def parse_side(data: bytes, path: str, side: str) -> Pointer | None:
    """Parse one side's pointer bytes; empty bytes (no such side) give None."""
    if not data.strip():
        return None
    try:
        return parse_pointer(data, path)
    except QuiltError as exc:
        raise FormatError(f"{side} version of {path}: {exc}") from None


def merge_pointers(
    ws: Workspace,
    base_data: bytes,
    ours_data: bytes,
    theirs_data: bytes,
    path: str,
    fetch: ManifestFetcher | None = None,
) -> MergeResult:
    """Merge three versions of the pointer ``path``; stores the merged manifest in the cache."""
    base = parse_side(base_data, path, "the merge base's")
    ours = parse_side(ours_data, path, "our")
    theirs = parse_side(theirs_data, path, "their")
    if ours is None or theirs is None:
        raise FormatError(f"{path}: one side of the merge has no pointer; resolve it with git checkout --ours/--theirs")
    base_top = base.top_hash if base else None

    def result(pointer: Pointer, text: bytes, how: str, **kw: Any) -> MergeResult:
        return MergeResult(path, pointer, text, ours.top_hash, theirs.top_hash, base_top, how, **kw)

    if ours.top_hash == theirs.top_hash:
        return result(ours, ours.to_bytes(), "same")
    if base is not None and base.top_hash == theirs.top_hash:
        return result(ours, ours.to_bytes(), "ours")
    if base is not None and base.top_hash == ours.top_hash:
        return result(theirs, theirs.to_bytes(), "theirs")

    tops = [p.top_hash for p in (base, ours, theirs) if p is not None]
    missing = [t for t in tops if not ws.cache.has_manifest(t)]
    if missing and fetch is not None:
        fetch(missing)
        missing = [t for t in tops if not ws.cache.has_manifest(t)]
    if missing:
        raise NotFound(
            f"{path}: manifest(s) {', '.join(t[:12] for t in missing)} are not in the cache, so the pointer cannot be "
            "merged; run: git quilt fetch, then redo the merge"
        )
    m_base = ws.cache.read_manifest(base.top_hash) if base is not None else None
    m_ours = ws.cache.read_manifest(ours.top_hash)
    m_theirs = ws.cache.read_manifest(theirs.top_hash)
    merged, conflicts, notes = merge_manifests(m_base, m_ours, m_theirs)
    top = ws.cache.put_manifest(merged)
    pointer = Pointer(path=ours.path, top_hash=top, files=len(merged), bytes=merged.total_size)
    if not conflicts:
        return result(pointer, pointer.to_bytes(), "merged", notes=notes)
    text = conflict_text(pointer, path, ours.top_hash, theirs.top_hash, conflicts)
    return result(pointer, text, "conflict", conflicts=conflicts, notes=notes)


def conflict_text(pointer: Pointer, path: str, ours: str, theirs: str, conflicts: list[str]) -> bytes:
    """A valid pointer to the merged package, preceded by comments that explain the conflict.

    The comment lists as many conflicting keys as fit under the pointer size cap.
    """
    pkg = path.removesuffix(".quilt")
    body = pointer.to_bytes()
    head = [f"# CONFLICT (gitquilt merge): {len(conflicts)} file(s) changed differently on both sides:"]
    tail = [
        "# This pointer names every clean change of both sides plus OUR version of those files.",
        f"# ours   = {ours}",
        f"# theirs = {theirs}",
        f"# their files: git quilt export {pkg} DIR --top-hash {theirs[:12]}",
        f"# resolve: put the right files in {pkg}/, then: git quilt add {pkg} && git add {path}",
    ]
    room = MAX_POINTER_BYTES - len(body) - sum(len(line.encode()) + 1 for line in head + tail) - 64
    listed: list[str] = []
    used = 0
    for key in conflicts:
        line = f"#   {key}"
        size = len(line.encode()) + 1
        if used + size > room:
            break
        listed.append(line)
        used += size
    if len(listed) < len(conflicts):
        listed.append(f"#   … and {len(conflicts) - len(listed)} more (printed by the merge)")
    return ("\n".join(head + listed + tail) + "\n").encode() + body
