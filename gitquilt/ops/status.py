"""``git quilt status``: how each package's directory compares with its pointer."""

from __future__ import annotations

from dataclasses import dataclass, field

from gitquilt.errors import NotFound, QuiltError
from gitquilt.manifest import Manifest
from gitquilt.ops.scan import Scan, fill_hashes, scan_fingerprint, scan_package
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.pointer import Pointer

CLEAN = "clean"
MODIFIED = "modified"
NOT_HYDRATED = "not hydrated"
NO_POINTER = "no pointer"
BROKEN = "error"


@dataclass
class PackageStatus:
    """The state of one package. ``pointer_vs_head`` is "unchanged", "modified" or "new"."""

    path: str
    state: str
    pointer_vs_head: str = "unchanged"
    top_hash: str | None = None
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    error: str | None = None

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
        }


def compare(manifest: Manifest, scan: Scan) -> tuple[list[str], list[str], list[str]]:
    """(added, changed, deleted) keys of the scanned files against the manifest."""
    added, changed, deleted = [], [], []
    seen = set()
    for i, key in enumerate(manifest.keys):
        fs = scan.files.get(key)
        if fs is None:
            deleted.append(key)
            continue
        seen.add(key)
        if fs.sha256 != manifest.sha256(i) or fs.size != manifest.sizes[i]:
            changed.append(key)
        elif fs.executable != bool(manifest.executable_flags[i]):
            changed.append(key)
    added = sorted(k for k in scan.files if k not in seen)
    added += sorted(scan.symlinks) + sorted(scan.special)
    return sorted(added), changed, deleted


def package_status(ws: Workspace, ref: PackageRef) -> PackageStatus:
    """Status of one package; never writes anything but the stat cache."""
    try:
        pointer = ws.read_pointer(ref)
    except QuiltError as exc:
        if not ws.pointer_path(ref).exists():
            return PackageStatus(ref.path, NO_POINTER, error=f"{ref.pointer} does not exist")
        return PackageStatus(ref.path, BROKEN, error=str(exc))
    st = PackageStatus(ref.path, CLEAN, top_hash=pointer.top_hash)
    st.pointer_vs_head = _pointer_vs_head(ws, ref, pointer)
    try:
        scan = scan_package(ws, ref)
    except QuiltError as exc:
        st.state, st.error = BROKEN, str(exc)
        return st
    if scan.kind == "absent" or (scan.kind == "dir" and not scan.files and pointer.files):
        st.state = NOT_HYDRATED
        return st
    fill_hashes(ws, scan)
    if not scan.symlinks and not scan.special:
        fp = scan_fingerprint(scan)
        if ws.statcache.fingerprint(pointer.top_hash) == fp:
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
    st.added, st.changed, st.deleted = compare(manifest, scan)
    if st.added or st.changed or st.deleted:
        st.state = MODIFIED
    return st


def _pointer_vs_head(ws: Workspace, ref: PackageRef, pointer: Pointer) -> str:
    if not ws.git.has_head():
        return "new"
    try:
        head = ws.git.read_at("HEAD", ref.pointer)
    except QuiltError:
        return "new"
    if head is None:
        return "new"
    return "unchanged" if head == pointer.to_bytes() else "modified"


def status(ws: Workspace, refs: list[PackageRef]) -> list[PackageStatus]:
    """Status of each package."""
    return [package_status(ws, ref) for ref in refs]
