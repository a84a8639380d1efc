"""Which package versions a repository still needs: the live set that gc keeps.

Git answers the hard part, the same way its own gc does: ``git rev-list --objects
--all --reflog --indexed-objects`` walks every branch, tag, remote-tracking ref and
stash, every reflog entry, every worktree's HEAD and index. Pointer blobs found there
are parsed for their top hashes. Pointer files in each worktree's working tree (added
with ``--no-stage``, or edited) are read too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gitquilt.errors import QuiltError
from gitquilt.gitexe import run_git
from gitquilt.gitrepo import GitRepo
from gitquilt.pointer import MAX_POINTER_BYTES, SUFFIX, parse_pointer


@dataclass
class LiveSet:
    """Top hashes a repository references, and what could not be read."""

    tops: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    sources: int = 0  # pointer blobs and files read


def live_tops(root: Path) -> LiveSet:
    """Every top hash the repository at ``root`` (all its worktrees) references."""
    git = GitRepo.discover(root)
    live = LiveSet()
    out = run_git(["rev-list", "--objects", "--all", "--reflog", "--indexed-objects"], cwd=git.root)
    blobs: dict[str, str] = {}
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        oid, _, path = line.partition(" ")
        if path.endswith(SUFFIX):
            blobs.setdefault(oid, path)
    for oid, path in blobs.items():
        try:
            data = git.blob(oid)
        except (KeyError, ValueError):
            continue
        _take(live, data, path, f"{path} (blob {oid[:12]})")
    for worktree in _worktrees(git.root):
        try:
            listed = run_git(["ls-files", "-co", "--exclude-standard", "-z", "--", f"*{SUFFIX}"], cwd=worktree)
        except QuiltError as exc:
            live.warnings.append(f"cannot list pointers in worktree {worktree}: {exc}")
            continue
        for rel in filter(None, listed.decode("utf-8", "surrogateescape").split("\0")):
            try:
                with open(worktree / rel, "rb") as f:
                    data = f.read(MAX_POINTER_BYTES + 1)
            except OSError:
                continue
            _take(live, data, rel, str(worktree / rel))
    return live


def _take(live: LiveSet, data: bytes, path: str, where: str) -> None:
    live.sources += 1
    if len(data) > MAX_POINTER_BYTES:
        return
    try:
        pointer = parse_pointer(data, where, file_name=path)
    except QuiltError as exc:
        live.warnings.append(f"ignoring {where}: {exc}")
        return
    live.tops.add(pointer.top_hash)


def _worktrees(root: Path) -> list[Path]:
    out = run_git(["worktree", "list", "--porcelain", "-z"], cwd=root)
    trees = []
    for record in out.decode("utf-8", "surrogateescape").split("\0"):
        if record.startswith("worktree "):
            path = Path(record[len("worktree "):])
            if path.is_dir():
                trees.append(path)
    return trees or [root]
