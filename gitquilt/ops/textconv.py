"""``git quilt textconv``: a pointer as text that shows which files a package holds.

git runs it (``diff.quilt.textconv``) on both sides of a changed ``*.quilt`` file, so
plain ``git diff`` and ``git log -p`` show the files that changed. It must never fail
a diff: whatever cannot be read is described, not raised.
"""

from __future__ import annotations

from gitquilt.errors import QuiltError
from gitquilt.ops.pinned import try_load_manifest
from gitquilt.ops.workspace import Workspace
from gitquilt.pointer import FORMAT_VERSION, Pointer, parse_pointer


def parse_lenient(data: bytes) -> Pointer | None:
    """The pointer in ``data`` (its file name is git's temporary one, so not checked), or None."""
    try:
        return parse_pointer(data, "pointer", check_location=False)
    except QuiltError:
        return None


def describe(pointer: Pointer, ws: Workspace | None, why_no_ws: str = "") -> str:
    """The pointer's fields, then ``key<TAB>size<TAB>sha256[:12]`` per file when the
    manifest is in the cache (``<TAB>x`` marks an executable file)."""
    lines = [
        f"format = {FORMAT_VERSION}",
        f"path = {pointer.path}",
        f"top_hash = {pointer.top_hash}",
        f"files = {pointer.files}",
        f"bytes = {pointer.bytes}",
    ]
    manifest = try_load_manifest(ws, pointer.top_hash) if ws is not None else None
    if manifest is None:
        note = why_no_ws or f"manifest {pointer.top_hash[:12]} is not in the cache (git quilt fetch brings it)"
        lines.append(f"# file list not shown: {note}")
        return "\n".join(lines) + "\n"
    lines.append("")
    flags = manifest.executable_flags
    for i, key in enumerate(manifest.keys):
        lines.append(f"{key}\t{manifest.sizes[i]}\t{manifest.sha256(i)[:12]}{chr(9) + 'x' if flags[i] else ''}")
    return "\n".join(lines) + "\n"
