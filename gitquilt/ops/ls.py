"""``git quilt ls``: the files of a package as its pointer (or a top hash) pins them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitquilt.manifest import Manifest
from gitquilt.ops.pinned import Pinned, load_manifest, pinned
from gitquilt.ops.workspace import PackageRef, Workspace


@dataclass
class Listing:
    """A package version and its manifest."""

    pin: Pinned
    manifest: Manifest

    @property
    def files(self) -> int:
        return len(self.manifest)

    @property
    def bytes(self) -> int:
        return self.manifest.total_size

    def summary_json(self) -> dict[str, Any]:
        """Everything but the entries."""
        return {
            "path": self.pin.path,
            "rev": self.pin.rev,
            "top_hash": self.pin.top_hash,
            "files": self.files,
            "bytes": self.bytes,
            "meta": self.manifest.meta,
        }

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return dict(
            self.summary_json(),
            entries=[
                {"key": m.keys[i], "size": m.sizes[i], "sha256": m.sha256(i), "executable": bool(m.executable_flags[i])}
                for i in range(len(m))
            ],
        )


def ls(ws: Workspace, ref: PackageRef | None, rev: str | None = None, top_hash: str | None = None) -> Listing:
    """The manifest ``ref`` pins in the work tree, at ``rev``, or the one named by a top-hash prefix."""
    pin = pinned(ws, ref, rev, top_hash)
    return Listing(pin, load_manifest(ws, pin))
