"""``git quilt status``: how each package's directory compares with its pointer."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from gitquilt.errors import NotFound, QuiltError
from gitquilt.manifest import Entry, Manifest
from gitquilt.ops.add import FILE_KIND_META
from gitquilt.ops.scan import Scan, fill_hashes, scan_fingerprint, scan_package, symlinked_parent
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.pointer import SUFFIX, Pointer

CLEAN = "clean"
MODIFIED = "modified"
NOT_HYDRATED = "not hydrated"
NO_POINTER = "no pointer"
BROKEN = "error"

#: How the kinds of a package read in messages and JSON.
FILE, DIRECTORY = "file", "directory"


@dataclass
class PackageStatus:
    """The state of one package. ``pointer_vs_head`` is "unchanged", "modified" or "new".

    ``kind_changed`` is set when the work tree holds a directory where the pointer pins a
    single file, or the reverse: ``(pinned, found)``, each "file" or "directory". Then
    every pinned file is listed as deleted and every file found as added.
    """

    path: str
    state: str
    pointer_vs_head: str = "unchanged"
    top_hash: str | None = None
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    error: str | None = None
    kind_changed: tuple[str, str] | None = None

    @property
    def differs(self) -> bool:
        return self.state != CLEAN or self.pointer_vs_head != "unchanged"

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "state": self.state,
            "pointer_vs_head": self.pointer_vs_head,
            "top_hash": self.top_hash,
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "error": self.error,
            "kind_changed": (
                None if self.kind_changed is None else {"pinned": self.kind_changed[0], "found": self.kind_changed[1]}
            ),
        }


def compare(manifest: Manifest, scan: Scan) -> tuple[list[str], list[str], list[str]]:
    """(added, changed, deleted) keys of the scanned files against the manifest. A pinned
    file now a symbolic link (or a special file) is changed; links are never followed."""
    changed: list[str] = []
    deleted: list[str] = []
    seen = set()
    not_files = set(scan.symlinks) | set(scan.special)
    for i, key in enumerate(manifest.keys):
        fs = scan.files.get(key)
        if fs is None:
            if key in not_files:
                seen.add(key)
                changed.append(key)
            else:
                deleted.append(key)
            continue
        seen.add(key)
        same_bytes = fs.sha256 == manifest.sha256(i) and fs.size == manifest.sizes[i]
        if not same_bytes or fs.executable != bool(manifest.executable_flags[i]):
            changed.append(key)
    added = [k for k in scan.files if k not in seen] + [k for k in not_files if k not in seen]
    return sorted(added), changed, deleted


def package_status(ws: Workspace, ref: PackageRef, head_pointers: dict[str, bytes | None] | None = None) -> PackageStatus:
    """Status of one package; never writes anything but the stat cache, never reads
    through a symbolic link (at the pointer, the package path or a parent directory).
    ``head_pointers``: pointer bytes at HEAD by pointer path, if already read."""
    refusal = _symlink_in_the_way(ws.root, ref)
    if refusal is not None:
        return PackageStatus(ref.path, BROKEN, error=refusal)
    try:
        pointer = ws.read_pointer(ref)
    except QuiltError as exc:
        if not ws.pointer_path(ref).exists():
            return PackageStatus(ref.path, NO_POINTER, error=f"{ref.pointer} does not exist")
        return PackageStatus(ref.path, BROKEN, error=str(exc))
    st = PackageStatus(ref.path, CLEAN, top_hash=pointer.top_hash)
    st.pointer_vs_head = _pointer_vs_head(ws, ref, pointer, head_pointers)
    try:
        scan = scan_package(ws, ref)  # refuses a symlink at the package path or in its parents
    except QuiltError as exc:
        st.state, st.error = BROKEN, str(exc)
        return st
    if scan.kind == "absent":
        st.state = NOT_HYDRATED
        return st
    empty_dir = scan.kind == "dir" and not (scan.files or scan.symlinks or scan.special)
    if empty_dir and pointer.files:
        # not hydrated, unless the package is a single file: then a directory stands in its place
        try:
            pinned_file = _is_file_manifest(ws.cache.read_manifest(pointer.top_hash))
        except QuiltError:
            pinned_file = False  # cannot tell without the manifest; checkout will say more
        if not pinned_file:
            st.state = NOT_HYDRATED
            return st
    fill_hashes(ws, scan)
    if not scan.symlinks and not scan.special:
        fp = scan_fingerprint(scan)
        if ws.statcache.fingerprint(pointer.top_hash) == fp and not _kind_in_doubt(scan, pointer):
            return st
    try:
        manifest = ws.cache.read_manifest(pointer.top_hash)
    except NotFound:
        st.state, st.error = BROKEN, (
            f"manifest {pointer.top_hash[:12]} is not in the cache; run: git quilt fetch {ref.path}"
        )
        return st
    except QuiltError as exc:
        st.state, st.error = BROKEN, str(exc)
        return st
    ws.statcache.set_fingerprint(pointer.top_hash, manifest.files_fingerprint())
    pinned = FILE if _is_file_manifest(manifest) else DIRECTORY
    found = FILE if scan.kind == "file" else DIRECTORY
    if pinned != found:
        # the same file list in another shape is still a change: checkout refuses it
        st.kind_changed = (pinned, found)
        st.deleted = list(manifest.keys)
        st.added = sorted([*scan.files, *scan.symlinks, *scan.special])
    else:
        st.added, st.changed, st.deleted = compare(manifest, scan)
    if st.added or st.changed or st.deleted or st.kind_changed:
        st.state = MODIFIED
    return st


def _is_file_manifest(manifest: Manifest) -> bool:
    return manifest.meta.get(FILE_KIND_META) == "file"


def _kind_in_doubt(scan: Scan, pointer: Pointer) -> bool:
    """The stat cache's fingerprint covers the file list only, and a directory ``x``
    holding just ``x`` lists like the single-file package ``x``. Only then is the kind in
    doubt; it is settled without reading the manifest when the scanned file, in the
    scanned kind, makes the very manifest ``add`` writes (no message): same top hash."""
    name = scan.ref.name
    if len(scan.files) != 1 or name not in scan.files:
        return False
    fs = scan.files[name]
    meta = {FILE_KIND_META: "file"} if scan.kind == "file" else {}
    try:
        expected = Manifest.from_entries([Entry(name, fs.sha256 or "", fs.size, fs.executable)], meta).top_hash
    except QuiltError:
        return True
    return expected != pointer.top_hash


def _symlink_in_the_way(root: Path, ref: PackageRef) -> str | None:
    """Why ``ref``'s pointer cannot be read safely: a parent directory or the pointer
    itself is a symbolic link, which could lead out of the work tree. None if neither."""
    try:
        link = symlinked_parent(root, ref)
    except OSError:
        return None  # unreadable: there is no pointer to read either
    if link is not None:
        return f"{ref.path}: parent directory {link} is a symbolic link; refusing it"
    try:
        st = os.lstat(root / ref.pointer)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"{ref.pointer} is a symbolic link; refusing to follow it"
    return None


def _pointer_vs_head(
    ws: Workspace, ref: PackageRef, pointer: Pointer, head_pointers: dict[str, bytes | None] | None = None
) -> str:
    if head_pointers is not None and ref.pointer in head_pointers:
        head = head_pointers[ref.pointer]
    else:
        if not ws.git.has_head():
            return "new"
        try:
            head = ws.git.read_at("HEAD", ref.pointer)
        except QuiltError:
            return "new"
    if head is None:
        return "new"
    return "unchanged" if head == pointer.to_bytes() else "modified"


def packages_for_status(ws: Workspace, args: tuple[str, ...] | list[str]) -> list[PackageRef]:
    """The packages ``status ARGS`` looks at: those named, else every package whose pointer
    git tracks and the work tree holds. A tracked pointer that a symbolic link hides
    (it, or a parent directory, is a link) is kept too, so that it shows as an error
    instead of vanishing from the listing."""
    if args:
        return ws.packages_from_args(args)
    refs: list[PackageRef] = []
    for path in ws.git.index_pointer_paths():  # Workspace.all_packages, plus the hidden ones
        ref = PackageRef(path[: -len(SUFFIX)])
        if (ws.root / path).is_file() or _symlink_in_the_way(ws.root, ref) is not None:
            refs.append(ref)
    return refs


def status(ws: Workspace, refs: list[PackageRef]) -> list[PackageStatus]:
    """Status of each package."""
    head_pointers: dict[str, bytes | None] | None = None
    if refs:
        if not ws.git.has_head():
            head_pointers = {ref.pointer: None for ref in refs}  # every pointer is new
        else:
            with contextlib.suppress(QuiltError):  # one read for all of them
                head_pointers = ws.git.read_many_at("HEAD", [ref.pointer for ref in refs])
    return [package_status(ws, ref, head_pointers) for ref in refs]
