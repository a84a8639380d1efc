"""``git quilt diff``: which files of which packages differ between two versions.

A side is a revision (pointers read from its tree through pygit2) or the work tree
(the pointer files on disk). Both manifests must be in the cache; the comparison
walks the two sorted key lists once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitquilt.errors import NotFound, QuiltError
from gitquilt.manifest import EMPTY_META, Manifest
from gitquilt.ops.pinned import fetch_hint
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.pointer import SUFFIX, Pointer, parse_pointer

ADDED = "added"
REMOVED = "removed"
MODIFIED = "modified"


@dataclass(frozen=True)
class FileChange:
    """One file that differs. Sizes and hashes are None on the side that lacks the file."""

    key: str
    change: str
    old_size: int | None = None
    new_size: int | None = None
    old_sha256: str | None = None
    new_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PackageDiff:
    """How one package differs; ``change`` is added, removed or modified (the package itself)."""

    path: str
    change: str
    old_top_hash: str | None
    new_top_hash: str | None
    files: list[FileChange] = field(default_factory=list)
    meta_changed: bool = False

    def count(self, change: str) -> int:
        return sum(1 for f in self.files if f.change == change)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "change": self.change,
            "old_top_hash": self.old_top_hash,
            "new_top_hash": self.new_top_hash,
            "meta_changed": self.meta_changed,
            "added": self.count(ADDED),
            "removed": self.count(REMOVED),
            "modified": self.count(MODIFIED),
            "files": [f.to_json() for f in self.files],
        }


def side_label(rev: str | None) -> str:
    return "the work tree" if rev is None else rev


def split_args(ws: Workspace, args: list[str] | tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Split ``[REV1 [REV2]] [PATH…]`` like git: leading arguments that name a revision
    and not a package in the work tree are revisions (``A..B`` counts as two)."""
    revs: list[str] = []
    rest = list(args)
    while rest and len(revs) < 2:
        arg = rest[0]
        if _is_package_path(ws, arg):
            break
        if ".." in arg and not revs:
            a, _, b = arg.partition("..")
            if _is_rev(ws, a or "HEAD") and _is_rev(ws, b or "HEAD"):
                revs = [a or "HEAD", b or "HEAD"]
                rest.pop(0)
                break
        if not _is_rev(ws, arg):
            break
        revs.append(arg)
        rest.pop(0)
    return revs, rest


def _is_package_path(ws: Workspace, arg: str) -> bool:
    if arg.endswith((SUFFIX, "/")):
        return True
    try:
        return ws.pointer_path(ws.package_ref(arg)).exists()
    except QuiltError:
        return False


def _is_rev(ws: Workspace, arg: str) -> bool:
    try:
        ws.git.commit(arg)
    except QuiltError:
        return False
    return True


def pointers_on_side(ws: Workspace, rev: str | None, refs: list[PackageRef] | None) -> dict[str, Pointer]:
    """Package path → pointer on one side, for ``refs`` (or every package there)."""
    out: dict[str, Pointer] = {}
    if rev is None:
        wanted = refs if refs is not None else ws.all_packages()
        for ref in wanted:
            if ws.pointer_path(ref).is_file():
                out[ref.path] = ws.read_pointer(ref)
        return out
    blobs = ws.git.pointers_at(rev)
    names = None if refs is None else {r.pointer for r in refs}
    for name, data in blobs.items():
        if names is not None and name not in names:
            continue
        out[name[: -len(SUFFIX)]] = parse_pointer(data, f"{name}@{rev}", file_name=name)
    return out


def compare_manifests(old: Manifest | None, new: Manifest | None) -> list[FileChange]:
    """Added, removed and modified files of ``new`` relative to ``old``, in key order."""
    ok = old.keys if old is not None else []
    nk = new.keys if new is not None else []
    if old is not None and new is not None and ok == nk:
        return [
            FileChange(ok[i], MODIFIED, old.sizes[i], new.sizes[i], old.sha256(i), new.sha256(i))
            for i in _changed_rows(old, new)
        ]
    out: list[FileChange] = []
    i = j = 0
    # str order equals UTF-8 byte order for valid keys, which is how manifests are sorted
    while i < len(ok) or j < len(nk):
        if j >= len(nk) or (i < len(ok) and ok[i] < nk[j]):
            assert old is not None
            out.append(FileChange(ok[i], REMOVED, old_size=old.sizes[i], old_sha256=old.sha256(i)))
            i += 1
        elif i >= len(ok) or nk[j] < ok[i]:
            assert new is not None
            out.append(FileChange(nk[j], ADDED, new_size=new.sizes[j], new_sha256=new.sha256(j)))
            j += 1
        else:
            assert old is not None and new is not None
            if _entry_differs(old, i, new, j):
                out.append(FileChange(
                    ok[i], MODIFIED, old.sizes[i], new.sizes[j], old.sha256(i), new.sha256(j)
                ))
            i += 1
            j += 1
    return out


#: Rows compared at once when both manifests list the same keys (the usual case).
BLOCK = 512


def _changed_rows(old: Manifest, new: Manifest) -> list[int]:
    """Rows that differ between two manifests with identical keys, skipping equal blocks
    with a few C-level comparisons instead of a Python step per file."""
    out: list[int] = []
    od, nd = old.raw_digests, new.raw_digests
    oe, ne = old.executable_flags, new.executable_flags
    om, nm = old.entry_metas, new.entry_metas
    for start in range(0, len(old.keys), BLOCK):
        end = min(start + BLOCK, len(old.keys))
        if (
            od[32 * start : 32 * end] == nd[32 * start : 32 * end]
            and old.sizes[start:end] == new.sizes[start:end]
            and oe[start:end] == ne[start:end]
            and (om is None and nm is None or (om or [])[start:end] == (nm or [])[start:end])
        ):
            continue
        out.extend(i for i in range(start, end) if _entry_differs(old, i, new, i))
    return out


def _entry_differs(old: Manifest, i: int, new: Manifest, j: int) -> bool:
    if old.raw_digests[32 * i : 32 * i + 32] != new.raw_digests[32 * j : 32 * j + 32]:
        return True
    if old.sizes[i] != new.sizes[j] or old.executable_flags[i] != new.executable_flags[j]:
        return True
    om = EMPTY_META if old.entry_metas is None else old.entry_metas[i]
    nm = EMPTY_META if new.entry_metas is None else new.entry_metas[j]
    return om != nm


def diff(
    ws: Workspace, rev1: str | None = None, rev2: str | None = None, paths: list[str] | tuple[str, ...] = ()
) -> list[PackageDiff]:
    """Packages that differ between ``rev1`` (None: HEAD) and ``rev2`` (None: the work tree).

    Without ``rev1`` in a repository that has no commit yet, the old side is empty.
    """
    old_rev = rev1 if rev1 is not None else "HEAD"
    refs = [ws.package_ref(p) for p in paths] if paths else None
    if rev1 is None and not ws.git.has_head():
        old: dict[str, Pointer] = {}
    else:
        old = pointers_on_side(ws, old_rev, refs)
    new = pointers_on_side(ws, rev2, refs)
    if refs is not None:
        absent = [r.path for r in refs if r.path not in old and r.path not in new]
        if absent:
            raise NotFound(
                f"no package {', '.join(absent)} in {side_label(old_rev)} or {side_label(rev2)}"
            )
    changed = sorted(p for p in set(old) | set(new)
                     if (old[p].top_hash if p in old else None) != (new[p].top_hash if p in new else None))
    manifests = _load_all(ws, [(p, old[p].top_hash, old_rev) for p in changed if p in old]
                          + [(p, new[p].top_hash, rev2) for p in changed if p in new])
    out: list[PackageDiff] = []
    for p in changed:
        o, n = old.get(p), new.get(p)
        om = manifests[o.top_hash] if o else None
        nm = manifests[n.top_hash] if n else None
        kind = ADDED if o is None else REMOVED if n is None else MODIFIED
        pd = PackageDiff(p, kind, o.top_hash if o else None, n.top_hash if n else None, compare_manifests(om, nm))
        pd.meta_changed = om is not None and nm is not None and om.meta != nm.meta
        out.append(pd)
    return out


def _load_all(ws: Workspace, wanted: list[tuple[str, str, str | None]]) -> dict[str, Manifest]:
    """Every wanted manifest, or one error naming all that are missing and how to fetch them."""
    missing = [(p, top, rev) for p, top, rev in wanted if not ws.cache.has_manifest(top)]
    if missing:
        shown = ", ".join(f"{top[:12]} ({p} in {side_label(rev)})" for p, top, rev in missing)
        hints = sorted({fetch_hint(p, rev) for p, _top, rev in missing})
        raise NotFound(
            f"{'manifest' if len(missing) == 1 else str(len(missing)) + ' manifests'} {shown} "
            f"{'is' if len(missing) == 1 else 'are'} not in the cache; run: {'; '.join(hints)}"
        )
    return {top: ws.cache.read_manifest(top) for _p, top, _rev in wanted}
