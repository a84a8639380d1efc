"""Which package versions (top hashes) a push, fetch or gc means.

* no option: the pointers in the work tree (what ``checkout`` would hydrate);
* ``--rev REV``: the pointers in that commit;
* ``--all``: every pointer in every commit reachable from any ref, tag, remote-tracking
  ref, stash or reflog entry, plus the index (``GitRepo.reachable_pointer_blobs``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gitquilt.errors import FormatError, UnsupportedFormat, UsageError
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.pointer import SUFFIX, parse_pointer


@dataclass(frozen=True)
class Version:
    """One package version: where a pointer names it, and its top hash."""

    path: str
    top_hash: str


def selected_versions(
    ws: Workspace, paths: tuple[str, ...] | list[str], rev: str | None = None, all_history: bool = False,
    progress: Progress | None = None,
) -> list[Version]:
    """The package versions a command's arguments select (sorted, unique by top hash and path)."""
    progress = progress or NullProgress()
    if all_history and rev is not None:
        raise UsageError("give --rev or --all, not both")
    if all_history:
        wanted = {ws.package_ref(p).pointer for p in paths} if paths else None
        return _reachable(ws, wanted, progress)
    refs: list[PackageRef] = ws.packages_from_args(list(paths), rev)
    out = {Version(ref.path, ws.pointer_at(ref, rev).top_hash) for ref in refs}
    return sorted(out, key=lambda v: (v.path, v.top_hash))


def _reachable(ws: Workspace, wanted: set[str] | None, progress: Progress) -> list[Version]:
    out: set[Version] = set()
    for blob_id, path in ws.git.reachable_pointer_blobs().items():
        if wanted is not None and path not in wanted:
            continue
        try:
            pointer = parse_pointer(ws.git.blob(blob_id), f"{path} (blob {blob_id[:12]})", file_name=path)
        except UnsupportedFormat:
            raise
        except FormatError as exc:
            progress.warn(f"skipping {path} in history: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - an odd blob in old history must not stop a push
            progress.warn(f"skipping {path} in history: {exc}")
            continue
        out.add(Version(path[: -len(SUFFIX)], pointer.top_hash))
    return sorted(out, key=lambda v: (v.path, v.top_hash))


def tops_of(versions: list[Version]) -> list[str]:
    """Distinct top hashes, sorted."""
    return sorted({v.top_hash for v in versions})
