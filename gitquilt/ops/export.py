"""``git quilt export``: write a package's files out as plain copies into any directory.

Plan first, write second: every file already in the destination is compared with
the manifest (hashed, never trusted by stat) and the export refuses to overwrite one
that differs unless ``force``. Files are written through :class:`fsutil.SafeDir`
(temporary file, then rename; no symlink below the destination is ever followed);
files in the destination that the package does not list are left alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitquilt import fsutil
from gitquilt.digest import hash_file
from gitquilt.errors import DirtyWorkTree, IntegrityError, MissingFragments, UnsafePath, UsageError
from gitquilt.keys import is_git_lookalike, parent_dirs
from gitquilt.manifest import Manifest
from gitquilt.ops.parallel import parallel_map
from gitquilt.ops.pinned import Pinned, fetch_hint, load_manifest, pinned
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.workspace import PackageRef, Workspace

COPY_THREADS = max(4, min(16, 2 * (os.cpu_count() or 2)))


@dataclass
class ExportResult:
    """What export wrote into ``dest``."""

    path: str
    top_hash: str
    dest: str
    written: int = 0
    unchanged: int = 0
    replaced: list[str] = field(default_factory=list)  # differing files overwritten by --force

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Plan:
    write: list[int] = field(default_factory=list)
    chmod: list[int] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unchanged: int = 0


def export(
    ws: Workspace,
    ref: PackageRef | None,
    dest: Path | str,
    rev: str | None = None,
    top_hash: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    """Copy the files of the pinned package version into ``dest`` (created if needed)."""
    progress = progress or NullProgress()
    pin = pinned(ws, ref, rev, top_hash)
    manifest = load_manifest(ws, pin)
    missing = ws.cache.missing(manifest.digests())
    if missing:
        raise MissingFragments(
            f"{len(missing)} fragment(s) of {pin.path} are not in the cache; run: {_fetch(pin)}", missing
        )
    target = Path(os.path.abspath(dest))
    _refuse_git_dirs(ws, target)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{dest} exists and is not a directory") from None
    plan = _plan(target, manifest, progress)
    if plan.conflicts and not force:
        shown = ", ".join(plan.conflicts[:10]) + (" …" if len(plan.conflicts) > 10 else "")
        raise DirtyWorkTree(
            f"export would overwrite {len(plan.conflicts)} file(s) in {dest} that differ from {pin.path}: {shown}; "
            "rerun with --force to replace them",
            plan.conflicts,
        )
    result = ExportResult(pin.path, pin.top_hash, str(target), unchanged=plan.unchanged,
                          replaced=plan.conflicts if force else [])
    _write(ws, target, manifest, plan, progress)
    result.written = len(plan.write)
    return result


def _fetch(pin: Pinned) -> str:
    return fetch_hint(pin.path, pin.rev)


def _refuse_git_dirs(ws: Workspace, target: Path) -> None:
    """Never write into a git directory (hooks there run code) or into the cache."""
    real = Path(os.path.realpath(target))
    for part in (target.parts + real.parts):
        if is_git_lookalike(part) or part == ".git":
            raise UnsafePath(f"{target}: refusing to export into a git directory")
    for inside in (ws.git.git_dir, ws.git.common_dir, ws.cache.root):
        base = Path(os.path.realpath(inside))
        if real == base or base in real.parents:
            raise UnsafePath(f"{target}: refusing to export into {inside}")


def _plan(target: Path, manifest: Manifest, progress: Progress) -> _Plan:
    plan = _Plan()
    blocked = _blocked_dirs(target, manifest.keys)
    to_hash: list[int] = []
    for i, key in enumerate(manifest.keys):
        parent = key.rpartition("/")[0]
        if parent and parent in blocked:
            raise UnsafePath(f"{target / parent}: {blocked[parent]}; refusing to write through it")
        try:
            st = os.lstat(target / key)
        except (FileNotFoundError, NotADirectoryError):
            plan.write.append(i)
            continue
        if stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{target / key}: a directory is in the way of a file of the package; move it away")
        if stat.S_ISREG(st.st_mode) and st.st_size == manifest.sizes[i]:
            to_hash.append(i)
        else:  # a different size, a symlink or a special file
            plan.conflicts.append(key)
            plan.write.append(i)
    if to_hash:
        progress.start(sum(manifest.sizes[i] for i in to_hash), "B", "comparing")

        def same(i: int) -> tuple[int, bool]:
            digest, size = hash_file(target / manifest.keys[i])
            progress.update(size)
            return i, digest == manifest.sha256(i)

        try:
            with contextlib.closing(parallel_map(same, to_hash, min(COPY_THREADS, len(to_hash)))) as done:
                for i, equal in done:
                    if not equal:
                        plan.conflicts.append(manifest.keys[i])
                        plan.write.append(i)
                    elif bool(os.lstat(target / manifest.keys[i]).st_mode & stat.S_IXUSR) != bool(
                        manifest.executable_flags[i]
                    ):
                        plan.chmod.append(i)
                    else:
                        plan.unchanged += 1
        finally:
            progress.close()
    plan.conflicts.sort()
    plan.write.sort()
    return plan


def _blocked_dirs(target: Path, keys: list[str]) -> dict[str, str]:
    """Directories the package needs whose place holds a symlink or a file: dir → why."""
    out: dict[str, str] = {}
    for d in sorted(parent_dirs(keys)):
        parent = d.rpartition("/")[0]
        if parent in out:
            out[d] = out[parent]
            continue
        try:
            st = os.lstat(target / d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISLNK(st.st_mode):
            out[d] = "a symbolic link stands where a directory is needed"
        elif not stat.S_ISDIR(st.st_mode):
            out[d] = "a file stands where a directory is needed"
    return out


def _write(ws: Workspace, target: Path, manifest: Manifest, plan: _Plan, progress: Progress) -> None:
    with fsutil.SafeDir.open(target, "", create=False) as safe:
        progress.start(sum(manifest.sizes[i] for i in plan.write), "B", "export")

        def write_one(i: int) -> None:
            key, digest, size = manifest.keys[i], manifest.sha256(i), manifest.sizes[i]
            with open(ws.cache.object_path(digest), "rb") as src:
                actual = os.fstat(src.fileno()).st_size
                if actual != size:
                    raise IntegrityError(
                        f"fragment {digest[:12]} is {actual} bytes but the manifest says {size} "
                        "(run: git quilt verify)"
                    )
                pfd, fd, tmp = safe.create_temp(key, bool(manifest.executable_flags[i]))
                try:
                    fsutil.copy_fd(src.fileno(), fd, size)
                    os.close(fd)
                    fd = -1
                    safe.replace(pfd, tmp, key)
                except BaseException:
                    if fd >= 0:
                        os.close(fd)
                    safe.discard(pfd, tmp)
                    raise
            progress.update(size)

        try:
            if len(plan.write) > 8:
                # create directories in order first, so that worker threads never race on mkdir
                for d in sorted({manifest.keys[i].rpartition("/")[0] for i in plan.write}):
                    safe.dir_fd(d, create=True)
                with contextlib.closing(parallel_map(write_one, plan.write, COPY_THREADS)) as done:
                    for _ in done:  # Ctrl-C or an error: what is queued is dropped
                        pass
            else:
                for i in plan.write:
                    write_one(i)
        finally:
            progress.close()
        umask = _umask() if plan.chmod else 0
        for i in plan.chmod:  # by descriptor: a link swapped in since the plan is refused
            safe.set_executable(manifest.keys[i], bool(manifest.executable_flags[i]), umask)


def _umask() -> int:
    """The process umask (reading it means setting it: done once, while no worker thread runs)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
