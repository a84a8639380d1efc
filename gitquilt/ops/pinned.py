"""Which manifest a package pins (work tree, a revision, or a top-hash prefix), loaded from the cache.

Shared by the inspection commands (ls, diff, log, export) so that they name a missing
package, revision or manifest the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from gitquilt.errors import NotFound, UsageError
from gitquilt.manifest import Manifest
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.pointer import Pointer


@dataclass(frozen=True)
class Pinned:
    """One package version: its label, top hash and (when read from one) its pointer."""

    path: str
    top_hash: str
    pointer: Pointer | None = None
    rev: str | None = None


def pinned(ws: Workspace, ref: PackageRef | None, rev: str | None = None, top_hash: str | None = None) -> Pinned:
    """The version of ``ref`` in the work tree, at ``rev``, or named by a top-hash prefix."""
    if rev is not None and top_hash is not None:
        raise UsageError("give --rev or --top-hash, not both")
    if top_hash is not None:
        top = ws.cache.resolve(top_hash)
        return Pinned(ref.path if ref is not None else top[:12], top)
    if ref is None:
        raise UsageError("name a package (or give --top-hash)")
    if rev is None and not ws.pointer_path(ref).is_file():
        hint = f"; add it with: git quilt add {ref.path}" if (ws.root / ref.path).exists() else ""
        raise NotFound(f"{ref.path} is not a package ({ref.pointer} does not exist){hint}")
    pointer = ws.pointer_at(ref, rev)
    return Pinned(ref.path, pointer.top_hash, pointer, rev)


def fetch_hint(path: str, rev: str | None = None) -> str:
    """The command that brings a package's missing data into the cache."""
    return f"git quilt fetch {path}" + (f" --rev {rev}" if rev else "")


def missing_manifest(path: str, top_hash: str, rev: str | None = None) -> NotFound:
    """The error for a manifest that is not in the cache."""
    where = f" at {rev}" if rev else ""
    return NotFound(
        f"{path}{where}: manifest {top_hash[:12]} is not in the cache; run: {fetch_hint(path, rev)}"
    )


def load_manifest(ws: Workspace, pin: Pinned) -> Manifest:
    """Read and validate the pinned manifest from the cache (NotFound names the fetch command)."""
    if not ws.cache.has_manifest(pin.top_hash):
        raise missing_manifest(pin.path, pin.top_hash, pin.rev)
    return ws.cache.read_manifest(pin.top_hash)


def try_load_manifest(ws: Workspace, top_hash: str) -> Manifest | None:
    """The manifest if the cache holds a valid copy, else None (for best-effort summaries)."""
    from gitquilt.errors import QuiltError

    if not ws.cache.has_manifest(top_hash):
        return None
    try:
        return ws.cache.read_manifest(top_hash)
    except QuiltError:
        return None
