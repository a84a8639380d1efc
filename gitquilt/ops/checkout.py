"""``git quilt checkout``: make package directories match their pointers.

Plan first, write second: the manifest is validated, every file that would be
overwritten or deleted is checked, and missing fragments and free space are checked
before the first byte is written. A file may be replaced only if its current bytes
are already in the cache (so nothing is lost); anything else is a user's change and
is refused unless ``force``, which first saves those files into the cache as a
package of their own whose top hash is reported.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
from array import array
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from gitquilt import fsutil
from gitquilt.errors import DirtyWorkTree, IntegrityError, MissingFragments, QuiltError, StoreFullError, UnsafePath
from gitquilt.keys import case_collisions, parent_dirs
from gitquilt.lock import FileLock
from gitquilt.manifest import Entry, Manifest
from gitquilt.ops import forked
from gitquilt.ops.parallel import numbered, parallel_map
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.scan import FileState, fill_hashes, scan_package
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.pointer import Pointer

#: Called with (workspace, package refs, missing digests) to fetch fragments from a remote.
#: Optional attributes a fetcher may have: ``fetch_manifests(ws, tops)`` (brings missing
#: manifests in before planning); ``always`` (true: called even when no fragment is
#: missing, e.g. ``pull``, which fetches whole versions); ``on_stored`` (checkout sets it
#: to a callable taking a digest, which the fetcher calls from any thread once that
#: fragment is durable in the cache: large files are then written while the rest downloads).
Fetcher = Callable[[Workspace, list[PackageRef], list[str]], None]
#: Files at least this large whose place in the work tree is empty are written as soon
#: as their fragment is in the cache, while other fragments still download (see _Early).
EARLY_MIN = 16 << 20
#: Copying threads, one per core: with more, small files only contend for the file
#: system's locks (4 threads on 2 cores: 1.2 s where 1 or 2 took 0.7 s, bench/core.py).
COPY_THREADS = max(2, min(16, os.cpu_count() or 2))
#: Small files are handed to the threads in groups of up to this many files or bytes.
CHUNK_FILES = 64
CHUNK_BYTES = 4 << 20


@dataclass
class CheckoutResult:
    """What checkout did to one package."""

    path: str
    top_hash: str
    written: int = 0
    deleted: int = 0
    unchanged: int = 0
    saved_top_hash: str | None = None  # the user's versions saved by --force
    saved: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    ref: PackageRef
    pointer: Pointer
    manifest: Manifest
    kind: str  # "dir" or "file"
    write: list[int] = field(default_factory=list)  # manifest indices to write
    chmod: list[int] = field(default_factory=list)  # right bytes, wrong executable bit
    delete: list[str] = field(default_factory=list)
    dirty: list[str] = field(default_factory=list)  # user changes that would be lost
    replace_links: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    blocked_dirs: list[str] = field(default_factory=list)
    existing: dict[str, FileState] = field(default_factory=dict)
    unchanged: int = 0


def checkout(
    ws: Workspace,
    refs: list[PackageRef],
    rev: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    fetcher: Fetcher | None = None,
) -> list[CheckoutResult]:
    """Hydrate each package from the pointer in the work tree (or in ``rev``)."""
    progress = progress or NullProgress()
    with FileLock(ws.git.git_dir / "quilt-checkout.lock", what="this work tree's checkout"):
        _ensure_manifests(ws, refs, rev, fetcher)
        plans = [_plan(ws, ref, rev, progress) for ref in refs]
        early = _Early.offer(ws, plans, fetcher)
        try:
            _ensure_fragments(ws, plans, fetcher)
        except BaseException:
            if early is not None:
                early.close(fetcher, failed=True)
            raise
        if early is not None:
            early.close(fetcher)
            for n in early.taken:  # a name appeared since the plan: look at that package again
                plans[n] = _plan(ws, refs[n], rev, progress)
        dirty = [f"{p.ref.path}/{k}" if p.kind == "dir" else p.ref.path for p in plans for k in p.dirty + p.blocked_dirs]
        if dirty and not force:
            raise DirtyWorkTree(
                f"checkout would overwrite or delete {len(dirty)} locally modified file(s): "
                f"{', '.join(dirty[:10])}{' …' if len(dirty) > 10 else ''}; "
                "add them with 'git quilt add', or rerun with --force to save them in the cache and replace them",
                dirty,
            )
        blocked = [f"{p.ref.path}/{d}" for p in plans for d in p.blocked_dirs]
        if blocked:
            raise UnsafePath(f"directories are in the way of files: {', '.join(blocked[:10])}; move them away")
        _check_space(ws, plans)
        return [_execute(ws, plan, progress, force, early.written(i) if early else None) for i, plan in enumerate(plans)]


def _plan(ws: Workspace, ref: PackageRef, rev: str | None, progress: Progress) -> _Plan:
    pointer = ws.pointer_at(ref, rev)
    try:
        manifest = ws.cache.read_manifest(pointer.top_hash)
    except QuiltError as exc:
        if not ws.cache.has_manifest(pointer.top_hash):
            raise MissingFragments(
                f"{ref.path}: manifest {pointer.top_hash[:12]} is not in the cache; run: git quilt fetch {ref.path}",
                [],
            ) from None
        raise exc
    if pointer.files != len(manifest):
        progress.warn(f"{ref.pointer}: pointer says {pointer.files} files, manifest has {len(manifest)}")
    is_file = manifest.meta.get("gitquilt.kind") == "file"
    if is_file and (len(manifest) != 1 or manifest.keys[0] != ref.name):
        raise UnsafePath(f"{ref.path}: single-file manifest {pointer.top_hash[:12]} must hold exactly '{ref.name}'")
    plan = _Plan(ref, pointer, manifest, "file" if is_file else "dir")
    collisions = case_collisions(manifest.keys)
    if collisions:
        shown = "; ".join(" / ".join(g) for g in collisions[:5])
        progress.warn(f"{ref.path}: file names that differ only by case (they collide on macOS and Windows): {shown}")
        if _case_insensitive(ws.root):
            raise UnsafePath(f"{ref.path}: this file system ignores case, so these files would overwrite each other: {shown}")
    scan = scan_package(ws, ref)
    if scan.kind == "dir" and is_file:
        raise UnsafePath(f"{ref.path} is a directory, but the package is a single file; move it away")
    if scan.kind == "file" and not is_file:
        raise UnsafePath(f"{ref.path} is a file, but the package is a directory; move it away")
    plan.leftovers = scan.leftovers
    plan.existing = scan.files
    fill_hashes(ws, scan)
    wanted = set()
    cache = ws.cache
    dir_keys = parent_dirs(manifest.keys)
    for i, key in enumerate(manifest.keys):
        wanted.add(key)
        fs = scan.files.get(key)
        if fs is None:
            if key in scan.symlinks:
                plan.dirty.append(key)
                plan.replace_links.append(key)
            plan.write.append(i)
            continue
        if fs.sha256 == manifest.sha256(i) and fs.size == manifest.sizes[i]:
            if fs.executable != bool(manifest.executable_flags[i]):
                plan.chmod.append(i)
            else:
                plan.unchanged += 1
            continue
        if not (fs.sha256 and cache.has(fs.sha256)):
            plan.dirty.append(key)
        plan.write.append(i)
    for key, fs in scan.files.items():
        if key in wanted:
            continue
        if key in dir_keys:
            plan.blocked_dirs.append(key)
            continue
        if not (fs.sha256 and cache.has(fs.sha256)):
            plan.dirty.append(key)
        plan.delete.append(key)
    for key in scan.symlinks + scan.special:
        if key not in wanted:
            plan.dirty.append(key)
            plan.delete.append(key)
    # a directory standing where the manifest has a file
    if scan.kind == "dir":
        for i in plan.write:
            key = manifest.keys[i]
            if any(k.startswith(key + "/") for k in scan.files) or os.path.isdir(ws.root / ref.path / key):
                plan.blocked_dirs.append(key)
    return plan


def _case_insensitive(root: os.PathLike[str] | str) -> bool:
    probe = os.path.join(root, ".git")
    return os.path.exists(probe.upper()) and os.path.exists(probe)


def _ensure_manifests(ws: Workspace, refs: list[PackageRef], rev: str | None, fetcher: Fetcher | None) -> None:
    """Let a fetcher that can (``fetch_manifests``) bring missing manifests in before planning."""
    fetch_manifests = getattr(fetcher, "fetch_manifests", None)
    if fetch_manifests is None:
        return
    tops = {ws.pointer_at(ref, rev).top_hash for ref in refs}
    missing = sorted(t for t in tops if not ws.cache.has_manifest(t))
    if missing:
        fetch_manifests(ws, missing)


def _ensure_fragments(ws: Workspace, plans: list[_Plan], fetcher: Fetcher | None) -> None:
    needed = {p.manifest.sha256(i) for p in plans for i in p.write}
    missing = ws.cache.missing(needed)
    if fetcher is not None and (missing or getattr(fetcher, "always", False)):
        fetcher(ws, [p.ref for p in plans], missing)
        missing = ws.cache.missing(missing)
    if missing:
        names = " ".join(p.ref.path for p in plans)
        raise MissingFragments(
            f"{len(missing)} fragment(s) are not in the cache; run: git quilt fetch {names}", missing
        )


def _check_space(ws: Workspace, plans: list[_Plan]) -> None:
    if ws.config.link_mode != "copy":
        return
    # per file system: a package directory may be a mount of its own
    need_by_dev: dict[int, tuple[int, str]] = {}
    for p in plans:
        need = sum(p.manifest.sizes[i] for i in p.write)
        if not need:
            continue
        where = ws.root / p.ref.path
        while not where.exists() and where != ws.root:
            where = where.parent
        try:
            dev = os.stat(where).st_dev
        except OSError:
            continue
        total, _ = need_by_dev.get(dev, (0, ""))
        need_by_dev[dev] = (total + need, str(where))
    for need, place in need_by_dev.values():
        try:
            free = shutil.disk_usage(place).free
        except OSError:
            continue
        if need > free:
            raise StoreFullError(
                f"checkout needs {need} bytes but the disk has {free} free; nothing was written"
            )


def _execute(ws: Workspace, plan: _Plan, progress: Progress, force: bool,
             early: tuple[set[int], list[tuple[str, int, int, int, str]]] | None = None) -> CheckoutResult:
    ref, manifest = plan.ref, plan.manifest
    early_done, early_rows = early or (set(), [])
    todo = [i for i in plan.write if i not in early_done] if early_done else plan.write
    result = CheckoutResult(ref.path, plan.pointer.top_hash, unchanged=plan.unchanged)
    if plan.dirty and force:
        _save_user_versions(ws, plan, result)
    base = ref.parent if plan.kind == "file" else ref.path
    key_prefix = ""
    with fsutil.SafeDir.open(ws.root, base, create=True) as safe:
        if plan.kind == "file":  # a killed checkout's temp file sits beside the package file
            fsutil.remove_dead_tmp(ws.root / base, [ref.name])
        for name in plan.leftovers:
            parent, _, leaf = name.rpartition("/")
            fd = safe.dir_fd(parent, create=False)
            if fd is not None:
                try:
                    os.unlink(leaf, dir_fd=fd)
                except OSError:
                    pass
        progress.start(sum(manifest.sizes[i] for i in todo), "B", f"checkout {ref.path}")
        rows: deque[tuple[str, int, int, int, str]] = deque(early_rows)  # the files written, to record
        root_abs = str(ws.root / base)

        copier = _Copier(ws, safe) if ws.config.link_mode == "copy" else None

        def write_one(i: int) -> tuple[str, int, int, int, str] | None:
            """Write file ``i``; its stat cache row (None if it is not a regular file)."""
            key = key_prefix + manifest.keys[i]
            digest = manifest.sha256(i)
            executable = bool(manifest.executable_flags[i])
            try:
                if copier is not None:
                    st = copier.copy(key, digest, manifest.sizes[i], executable)
                else:
                    pfd, _fd, tmp = _materialise(ws, safe, key, digest, manifest.sizes[i], executable)
                    try:
                        safe.replace(pfd, tmp, key)
                    except BaseException:
                        safe.discard(pfd, tmp)
                        raise
                    st = os.stat(key.rpartition("/")[2], dir_fd=pfd, follow_symlinks=False)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StoreFullError(
                        f"no space left on device while writing {ref.path}/{key}; nothing partial was left "
                        "at a final path: free some space and rerun the checkout"
                    ) from None
                raise
            if stat.S_ISREG(st.st_mode):
                return (f"{root_abs}/{key}", st.st_size, st.st_mtime_ns, st.st_ino, digest)
            return None

        def write_chunk(chunk: list[int]) -> list[tuple[str, int, int, int, str]]:
            out = []
            for i in chunk:
                row = write_one(i)
                if row is not None:
                    out.append(row)
            return out

        try:
            if len(todo) > 8 or (len(todo) > 1 and sum(manifest.sizes[i] for i in todo) >= 2 * EARLY_MIN):
                # pre-create directories in order, so workers never race on mkdir
                for d in sorted(parent_dirs([manifest.keys[i] for i in todo])):
                    safe.dir_fd(d, create=True)
                # on Ctrl-C or an error, queued files are dropped, not all written
                # (ops/parallel.py, ops/forked.py)
                chunks = _chunks(todo, manifest.sizes, manifest.keys)
                workers = min(COPY_THREADS, len(chunks))
                if forked.usable(workers):
                    done: Generator[tuple[int, list[tuple[str, int, int, int, str]]], None, None] = (
                        forked.fork_map(write_chunk, chunks, workers)
                    )
                else:
                    done = numbered(parallel_map(write_chunk, chunks, workers))
                with contextlib.closing(done):
                    for index, chunk_rows in done:
                        rows.extend(chunk_rows)
                        progress.update(sum(manifest.sizes[i] for i in chunks[index]))
                        if len(rows) >= 2048:  # record while the workers write, not all at the end
                            ws.statcache.record([rows.popleft() for _ in range(len(rows))])
            else:
                for i in todo:
                    row = write_one(i)
                    if row is not None:
                        rows.append(row)
                    progress.update(manifest.sizes[i])
        finally:
            progress.close()
            ws.statcache.record(rows)
        for i in plan.chmod:  # through an O_NOFOLLOW descriptor: never chmod a link's target
            with contextlib.suppress(FileNotFoundError):
                safe.set_executable(manifest.keys[i], bool(manifest.executable_flags[i]), _umask())
        for key in plan.delete:
            safe.remove_file(key)
        if plan.delete:
            safe.remove_empty_dirs([k.rpartition("/")[0] for k in plan.delete if "/" in k])
    result.written = len(plan.write)
    result.deleted = len(plan.delete)
    ws.statcache.set_fingerprint(plan.pointer.top_hash, manifest.files_fingerprint())
    return result


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def _chunks(indices: list[int], sizes: array[int] | list[int], keys: list[str]) -> list[list[int]]:
    """Units of work for the threads: small files grouped (one task per small file costs
    about as much as copying it), a large file alone. Each unit stays in one directory,
    and consecutive units are in different directories where there are several, so the
    threads do not queue on one directory's lock."""
    by_dir: dict[str, list[list[int]]] = {}
    open_chunk: dict[str, tuple[list[int], int]] = {}
    for i in indices:
        parent = keys[i].rpartition("/")[0]
        units = by_dir.setdefault(parent, [])
        if sizes[i] >= CHUNK_BYTES:
            units.append([i])
            continue
        cur, cur_bytes = open_chunk.get(parent) or ([], 0)
        if not cur:
            units.append(cur)
        cur.append(i)
        cur_bytes += sizes[i]
        if cur_bytes >= CHUNK_BYTES or len(cur) >= CHUNK_FILES:
            open_chunk.pop(parent, None)
        else:
            open_chunk[parent] = (cur, cur_bytes)
    queues = list(by_dir.values())
    chunks: list[list[int]] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        chunks.extend(q[depth] for q in queues if depth < len(q))
    return chunks


class _Copier:
    """Hydrates files in copy mode: the bytes go into an unnamed file (``O_TMPFILE``) that
    is linked in under its final name once complete, so no partial file ever has a name
    and no temporary name has to be created and renamed. Where the file system or the
    platform lacks that, or a file is already there, a named temporary file and a rename."""

    def __init__(self, ws: Workspace, safe: fsutil.SafeDir) -> None:
        self.cache = ws.cache
        self.safe = safe
        self.unnamed = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
        self.reflink = True  # until the first copy finds that these file systems cannot

    def copy(self, key: str, digest: str, size: int, executable: bool, replace: bool = True) -> os.stat_result:
        """Write ``key`` from the fragment ``digest``; return the stat of the file written.

        With ``replace`` False, a name that is taken is left alone (FileExistsError).
        """
        parent, _, name = key.rpartition("/")
        src = os.open(self.cache.object_file(digest), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check_fragment_size(os.fstat(src).st_size, digest, size)
            if self.unnamed:
                st = self._copy_unnamed(src, key, parent, name, size, executable, replace)
                if st is not None:
                    return st
            return self._copy_named(src, key, size, executable, replace)
        finally:
            os.close(src)

    def _copy_unnamed(
        self, src: int, key: str, parent: str, name: str, size: int, executable: bool, replace: bool = True
    ) -> os.stat_result | None:
        pfd = self.safe.dir_fd(parent, create=True)
        if pfd is None:  # its parent vanished while we created it
            raise UnsafePath(f"{self.safe.label}/{parent}: directory changed while files were written into it")
        try:
            fd = os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o777 if executable else 0o666, dir_fd=pfd)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            self.unnamed = False  # this file system cannot: named temporary files from now on
            return None
        try:
            self.reflink = fsutil.copy_fd(src, fd, size, self.reflink)
            st = os.fstat(fd)
            proc = f"/proc/self/fd/{fd}"
            try:
                os.link(proc, name, dst_dir_fd=pfd, follow_symlinks=True)  # never replaces anything
                return st
            except FileExistsError:
                if not replace:
                    raise
            # something is there: give the bytes a temporary name, then rename it over
            tmp = fsutil.tmp_name(name)
            os.link(proc, tmp, dst_dir_fd=pfd, follow_symlinks=True)
            try:
                self.safe.replace(pfd, tmp, key)
            except BaseException:
                self.safe.discard(pfd, tmp)
                raise
            return st
        finally:
            os.close(fd)

    def _copy_named(self, src: int, key: str, size: int, executable: bool, replace: bool = True) -> os.stat_result:
        os.lseek(src, 0, os.SEEK_SET)
        pfd, fd, tmp = self.safe.create_temp(key, executable)
        try:
            try:
                self.reflink = fsutil.copy_fd(src, fd, size, self.reflink)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if replace:
                self.safe.replace(pfd, tmp, key)
            else:
                os.link(tmp, key.rpartition("/")[2], src_dir_fd=pfd, dst_dir_fd=pfd, follow_symlinks=False)
                self.safe.discard(pfd, tmp)
        except BaseException:
            self.safe.discard(pfd, tmp)
            raise
        return st


class _Early:
    """Writes large files whose place in the work tree is empty as soon as their fragment
    is durable in the cache, from the fetcher's threads, so that the copy overlaps the
    downloads still running instead of waiting for all of them (``pull`` of big files).

    Offered only where checkout would go ahead anyway: copy mode, no file of the user's in
    the way (nothing dirty or blocked in any plan) and room on the disk. It only ever
    creates names that do not exist (never replaces: a name taken since the plan is left
    to :func:`_execute`), each file complete before it is named (as :class:`_Copier`).
    A file it could not write for any other reason is simply written later by
    :func:`_execute`, which is told what was written here.
    """

    def __init__(self, ws: Workspace, plans: list[_Plan], targets: dict[str, list[tuple[int, int]]]) -> None:
        self.ws = ws
        self.plans = plans
        self.targets = targets  # digest -> [(plan index, manifest index)]
        self._lock = threading.Lock()
        self._copiers: dict[int, _Copier] = {}
        self._safes: list[fsutil.SafeDir] = []
        self.done: dict[int, set[int]] = {}
        self.rows: dict[int, list[tuple[str, int, int, int, str]]] = {}
        self.taken: set[int] = set()  # plans where a file to create appeared meanwhile

    @classmethod
    def offer(cls, ws: Workspace, plans: list[_Plan], fetcher: Fetcher | None) -> _Early | None:
        """Hand ``fetcher`` an ``on_stored`` callback if it takes one and early writes are safe."""
        if fetcher is None or not hasattr(fetcher, "on_stored") or ws.config.link_mode != "copy":
            return None
        if any(p.dirty or p.blocked_dirs or p.replace_links for p in plans):
            return None
        try:
            _check_space(ws, plans)
        except StoreFullError:
            return None
        targets: dict[str, list[tuple[int, int]]] = {}
        for n, p in enumerate(plans):
            for i in p.write:
                if p.manifest.sizes[i] >= EARLY_MIN and p.manifest.keys[i] not in p.existing:
                    targets.setdefault(p.manifest.sha256(i), []).append((n, i))
        if not targets:
            return None
        early = cls(ws, plans, targets)
        fetcher.on_stored = early.stored
        return early

    def _copier(self, n: int) -> _Copier:
        with self._lock:
            copier = self._copiers.get(n)
            if copier is None:
                plan = self.plans[n]
                base = plan.ref.parent if plan.kind == "file" else plan.ref.path
                safe = fsutil.SafeDir.open(self.ws.root, base, create=True)
                self._safes.append(safe)
                copier = self._copiers[n] = _Copier(self.ws, safe)
            return copier

    def stored(self, digest: str) -> None:
        """The fragment ``digest`` is durable in the cache: write the files waiting for it."""
        with self._lock:
            todo = self.targets.pop(digest, [])
        for n, i in todo:
            plan = self.plans[n]
            key, size = plan.manifest.keys[i], plan.manifest.sizes[i]
            try:
                st = self._copier(n).copy(key, digest, size, bool(plan.manifest.executable_flags[i]), replace=False)
            except FileExistsError:
                with self._lock:
                    self.taken.add(n)  # someone's file: checkout plans this package again
                continue
            except (OSError, QuiltError):
                continue  # a full disk, a directory in the way…: _execute deals with it
            base = plan.ref.parent if plan.kind == "file" else plan.ref.path
            with self._lock:
                self.done.setdefault(n, set()).add(i)
                self.rows.setdefault(n, []).append((f"{self.ws.root / base}/{key}", st.st_size, st.st_mtime_ns,
                                                    st.st_ino, digest))

    def written(self, n: int) -> tuple[set[int], list[tuple[str, int, int, int, str]]]:
        """What was written for plan ``n``: manifest indices, and their stat cache rows
        (nothing for a plan made again, which sees those files as they are)."""
        if n in self.taken:
            return set(), []
        return self.done.get(n, set()), self.rows.get(n, [])

    def close(self, fetcher: Fetcher | None, failed: bool = False) -> None:
        """Stop taking callbacks; after a failure, or before a package is planned again,
        remember the hashes of what was written."""
        with contextlib.suppress(AttributeError):
            fetcher.on_stored = None  # type: ignore[union-attr]
        for safe in self._safes:
            safe.close()
        self._safes.clear()
        self._copiers.clear()
        if failed or self.taken:
            self.ws.statcache.record([row for rows in self.rows.values() for row in rows])


def _materialise(
    ws: Workspace, safe: fsutil.SafeDir, key: str, digest: str, size: int, executable: bool
) -> tuple[int, int | None, str]:
    """Link the fragment in under a temporary name beside ``key`` (hardlink and symlink
    modes; copy mode is :class:`_Copier`)."""
    mode = ws.config.link_mode
    src = ws.cache.object_path(digest)
    parent = key.rpartition("/")[0]
    pfd = safe.dir_fd(parent, create=True)
    assert pfd is not None
    tmp = fsutil.tmp_name(key.rpartition("/")[2])
    _check_fragment_size(os.stat(src).st_size, digest, size)
    if mode == "hardlink":
        os.chmod(src, 0o555 if executable else 0o444)
        os.link(src, tmp, dst_dir_fd=pfd)
    else:
        os.symlink(str(src), tmp, dir_fd=pfd)
    return pfd, None, tmp


def _check_fragment_size(actual: int, digest: str, size: int) -> None:
    """A manifest whose size disagrees with the fragment is hostile or corrupt: never
    hydrate a truncated (or over-long) file from it."""
    if actual != size:
        raise IntegrityError(
            f"fragment {digest[:12]} is {actual} bytes but the manifest says {size}; "
            "the manifest is corrupt (run: git quilt verify)"
        )


def _save_user_versions(ws: Workspace, plan: _Plan, result: CheckoutResult) -> None:
    """With --force, keep every file about to be lost in the cache, as a package of its own."""
    entries: list[Entry] = []
    with ws.cache.batch() as batch:
        for key in plan.dirty:
            fs = plan.existing.get(key)
            if fs is None:
                continue  # symlinks and special files: nothing of ours to keep
            digest, size = batch.put_file(fs.abs_path)
            entries.append(Entry(key, digest, size, fs.executable))
    if entries:
        saved = Manifest.from_entries(entries, {"message": f"saved by checkout --force of {plan.ref.path}"})
        result.saved_top_hash = ws.cache.put_manifest(saved)
        result.saved = [e.key for e in entries]
