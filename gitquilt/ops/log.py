"""``git quilt log``: the commits that changed a package's pointer, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from gitquilt.errors import NotFound, QuiltError
from gitquilt.gitrepo import CommitInfo
from gitquilt.manifest import Manifest
from gitquilt.ops.diff import ADDED, MODIFIED, REMOVED, compare_manifests
from gitquilt.ops.pinned import try_load_manifest
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.pointer import Pointer, parse_pointer


@dataclass
class LogEntry:
    """One commit that changed the pointer. Counts are None when a manifest is not cached."""

    commit: CommitInfo
    pointer: Pointer | None  # None: the commit deleted the package
    previous: Pointer | None  # None: the commit created it
    added: int | None = None
    removed: int | None = None
    modified: int | None = None
    error: str | None = None  # the pointer in this commit could not be read

    @property
    def date(self) -> str:
        """Commit date in the committer's time zone, ``YYYY-MM-DD HH:MM:SS +HHMM``."""
        tz = timezone(timedelta(minutes=self.commit.offset))
        return datetime.fromtimestamp(self.commit.time, tz).strftime("%Y-%m-%d %H:%M:%S %z")

    def to_json(self) -> dict[str, Any]:
        c, p = self.commit, self.pointer
        return {
            "commit": c.id, "date": self.date, "time": c.time, "author": c.author, "email": c.email,
            "message": c.message, "top_hash": p.top_hash if p else None, "files": p.files if p else None,
            "bytes": p.bytes if p else None, "previous_top_hash": self.previous.top_hash if self.previous else None,
            "added": self.added, "removed": self.removed, "modified": self.modified, "error": self.error,
        }


def log(ws: Workspace, ref: PackageRef, rev: str = "HEAD", limit: int | None = None) -> list[LogEntry]:
    """Commits reachable from ``rev`` that changed ``ref``'s pointer, newest first (at most ``limit``)."""
    if rev != "HEAD" or ws.git.has_head():
        ws.git.commit(rev)  # an unknown revision is an error, not an empty log
    manifests: dict[str, Manifest | None] = {}
    out: list[LogEntry] = []
    for info, new, old in ws.git.history_of(ref.pointer, rev):
        if limit is not None and len(out) >= limit:
            break
        entry = LogEntry(info, None, None)
        try:
            entry.pointer = _parse(new, ref, info)
            entry.previous = _parse(old, ref, info, parent=True)
        except QuiltError as exc:
            entry.error = str(exc)
            out.append(entry)
            continue
        _count(ws, entry, manifests)
        out.append(entry)
    if not out and not ws.pointer_path(ref).is_file():
        raise NotFound(
            f"{ref.path} is not a package: no commit in {rev} and no file in the work tree has {ref.pointer}"
        )
    return out


def _parse(data: bytes | None, ref: PackageRef, info: CommitInfo, parent: bool = False) -> Pointer | None:
    if data is None:
        return None
    where = f"{ref.pointer}@{info.id[:12]}{'^' if parent else ''}"
    return parse_pointer(data, where, file_name=ref.pointer)


def _count(ws: Workspace, entry: LogEntry, cache: dict[str, Manifest | None]) -> None:
    new, old = entry.pointer, entry.previous
    if old is None and new is not None:
        entry.added, entry.removed, entry.modified = new.files, 0, 0
        return
    if new is None and old is not None:
        entry.added, entry.removed, entry.modified = 0, old.files, 0
        return
    if new is None or old is None:
        return
    for top in (new.top_hash, old.top_hash):
        if top not in cache:
            cache[top] = try_load_manifest(ws, top)
    nm, om = cache[new.top_hash], cache[old.top_hash]
    if nm is None or om is None:
        return
    changes = compare_manifests(om, nm)
    entry.added = sum(1 for c in changes if c.change == ADDED)
    entry.removed = sum(1 for c in changes if c.change == REMOVED)
    entry.modified = sum(1 for c in changes if c.change == MODIFIED)
