"""Scan a package's files in the work tree and hash what the stat cache cannot vouch for."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gitquilt import fsutil
from gitquilt.digest import BLOCK_SIZE, SMALL_FILE, hash_bytes, hash_stream
from gitquilt.errors import UnsafePath
from gitquilt.manifest import files_fingerprint
from gitquilt.ops import forked
from gitquilt.ops.parallel import numbered, parallel_map
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.statcache import Row
from gitquilt.store import WriteBatch

#: Hashing workers, one per core: forked processes in the command-line tool, else
#: threads (hashlib releases the GIL on large buffers; see ops/forked.py). More than
#: that does not pay for small files either: their cost is the file system's, and
#: workers beyond the cores only contend for its locks (measured: bench/core.py).
HASH_THREADS = max(2, min(32, os.cpu_count() or 2))
#: Small files are handed to the threads in groups of up to this many files or bytes.
CHUNK_FILES = 64
CHUNK_BYTES = 4 << 20


@dataclass
class FileState:
    """One file found in the work tree."""

    key: str
    abs_path: str
    size: int
    mtime_ns: int
    ino: int
    executable: bool
    sha256: str | None = None


@dataclass
class Scan:
    """What a package directory holds right now."""

    ref: PackageRef
    kind: str  # "dir", "file" or "absent"
    files: dict[str, FileState] = field(default_factory=dict)
    symlinks: list[str] = field(default_factory=list)
    special: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # our own temp files (interrupted writes)
    not_nfc: list[str] = field(default_factory=list)


def _state(key: str, path: str, st: os.stat_result) -> FileState:
    return FileState(key, path, st.st_size, st.st_mtime_ns, st.st_ino, bool(st.st_mode & stat.S_IXUSR))


def scan_package(ws: Workspace, ref: PackageRef) -> Scan:
    """List the files of ``ref`` in the work tree (no hashing), refusing symlinked parents."""
    target = ws.root / ref.path
    _check_parents(ws.root, ref)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return Scan(ref, "absent")
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{ref.path} is a symbolic link; refusing to follow it")
    if stat.S_ISREG(st.st_mode):
        scan = Scan(ref, "file")
        scan.files[ref.name] = _state(ref.name, str(target), st)
        return scan
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{ref.path} is neither a file nor a directory")
    scan = Scan(ref, "dir")
    import unicodedata

    for rel, entry in fsutil.walk_files(target):
        name = entry.name
        if fsutil.tmp_owner_pid(name) is not None:
            scan.leftovers.append(rel)
            continue
        est = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(est.st_mode):
            scan.symlinks.append(rel)
        elif not stat.S_ISREG(est.st_mode):
            scan.special.append(rel)
        else:
            if not rel.isascii() and unicodedata.normalize("NFC", rel) != rel:
                scan.not_nfc.append(rel)
            scan.files[rel] = _state(rel, entry.path, est)
    return scan


def scan_fingerprint(scan: Scan) -> str:
    """Fingerprint of the scanned files (same as :meth:`Manifest.files_fingerprint`)."""
    files = sorted(scan.files.values(), key=lambda f: f.key.encode("utf-8", "surrogatepass"))
    digests = b"".join(bytes.fromhex(f.sha256 or "0" * 64) for f in files)
    return files_fingerprint(
        [f.key for f in files], digests, [f.size for f in files], bytes(1 if f.executable else 0 for f in files)
    )


def symlinked_parent(root: Path, ref: PackageRef) -> str | None:
    """The first of ``ref``'s parent directories (relative, POSIX) that is a symbolic link
    (it could lead out of the work tree), or None; a missing parent ends the walk."""
    cur = root
    for part in ref.parent.split("/") if ref.parent else []:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return cur.relative_to(root).as_posix()
    return None


def _check_parents(root: Path, ref: PackageRef) -> None:
    """Refuse a package whose parent directories include a symlink (it could lead outside)."""
    link = symlinked_parent(root, ref)
    if link is not None:
        raise UnsafePath(f"{ref.path}: parent directory {link} is a symbolic link; refusing it")


def fill_hashes(
    ws: Workspace,
    scan: Scan,
    batch: WriteBatch | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
    before_hashing: Callable[[], None] | None = None,
    record: bool = True,
) -> list[Row]:
    """Set ``sha256`` on every scanned file: from the stat cache when it vouches for the
    file, else by reading it (storing the bytes in the cache when ``batch`` is given).

    ``before_hashing`` is called once, only when some file has to be read. Returns the
    stat cache rows of the files read, recorded unless ``record`` is False (the caller
    records them, e.g. while the batch commits).
    """
    progress = progress or NullProgress()
    known = ws.statcache.lookup_dir(str(ws.root / scan.ref.path)) if scan.kind == "dir" else {}
    if scan.kind == "file":
        known = {k: v for k, v in ws.statcache.lookup_dir(str((ws.root / scan.ref.path).parent)).items()}
    todo: list[FileState] = []
    vouched: list[tuple[FileState, str]] = []
    for fs in scan.files.values():
        hit = known.get(fs.abs_path)
        if hit is not None and hit[:3] == (fs.size, fs.mtime_ns, fs.ino):
            vouched.append((fs, hit[3]))
        else:
            todo.append(fs)
    # storing: a vouched file whose fragment left the cache is read again
    present = batch.stored({d for _fs, d in vouched}) if batch is not None and vouched else None
    for fs, digest in vouched:
        if present is None or digest in present:
            fs.sha256 = digest
        else:
            todo.append(fs)
    if not todo:
        return []
    progress.start(sum(f.size for f in todo), "B", "hashing")
    # each worker (a thread, or a forked process with a write batch of its own) returns
    # per file (sha256, size hashed, stat cache row or None); this process records them
    into = batch

    def work(chunk: list[FileState]) -> list[tuple[str, int, Row | None]]:
        out: list[tuple[str, int, Row | None]] = []
        for fs in chunk:
            # st: the open file's stat after reading it (no second lookup of the path)
            if into is not None:
                digest, size, st = into.put_file_stat(fs.abs_path, fs.size)
            else:
                digest, size, st = _hash_file_stat(fs.abs_path, fs.size)
            # unchanged since the scan: the stat cache may vouch for it next time
            unchanged = (st.st_size, st.st_mtime_ns, st.st_ino) == (size, fs.mtime_ns, fs.ino)
            out.append((digest, size, (fs.abs_path, size, fs.mtime_ns, fs.ino, digest) if unchanged else None))
        return out

    @contextlib.contextmanager
    def child_batch() -> Iterator[None]:
        # a forked worker stores into a batch of its own, durable before it reports done
        if batch is None:
            yield
            return
        nonlocal into
        with batch.store.batch() as into:
            yield

    rows: list[Row] = []
    chunks = _chunks(todo)
    workers = min(jobs or HASH_THREADS, HASH_THREADS, len(chunks))
    if forked.usable(workers):
        done: Generator[tuple[int, list[tuple[str, int, Row | None]]], None, None] = forked.fork_map(
            work, chunks, workers, child_context=child_batch, after_fork=before_hashing
        )
    else:
        if before_hashing is not None:
            before_hashing()
        done = numbered(parallel_map(work, chunks, workers))  # Ctrl-C safe (see ops/parallel.py)
    try:
        for index, results in done:
            for fs, (digest, size, row) in zip(chunks[index], results):
                fs.sha256 = digest
                fs.size = size  # what was hashed, even if the file changed since the scan
                if row is not None:
                    rows.append(row)
            progress.update(sum(size for _d, size, _r in results))
    finally:
        done.close()  # on an error, stops the hand-out and waits for running items
        progress.close()
    if record:
        ws.statcache.record(rows)
    return rows


def _chunks(files: list[FileState]) -> list[list[FileState]]:
    """Group small files into units of work (one task per file costs more than hashing
    a few KiB); a large file is a unit of its own."""
    chunks: list[list[FileState]] = []
    cur: list[FileState] = []
    cur_bytes = 0
    for fs in files:
        if fs.size >= CHUNK_BYTES:
            chunks.append([fs])
            continue
        cur.append(fs)
        cur_bytes += fs.size
        if cur_bytes >= CHUNK_BYTES or len(cur) >= CHUNK_FILES:
            chunks.append(cur)
            cur, cur_bytes = [], 0
    if cur:
        chunks.append(cur)
    return chunks


def _hash_file(path: str, size_hint: int) -> tuple[str, int]:
    """(sha256, size) of a file; a small one is read in one system call."""
    digest, size, _st = _hash_file_stat(path, size_hint)
    return digest, size


def _hash_file_stat(path: str, size_hint: int) -> tuple[str, int, os.stat_result]:
    """(sha256, size, stat) of a file, the stat taken on the open file after reading it;
    a small file is read in one system call."""
    # never through a symlink swapped in since the scan, never blocking on a FIFO
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    if size_hint > SMALL_FILE:
        with os.fdopen(fd, "rb", buffering=0) as f:
            digest, size = hash_stream(f)
            return digest, size, os.fstat(f.fileno())
    try:
        data = os.read(fd, size_hint + 1)  # one byte more: EOF is seen without a second read
        if len(data) != size_hint:  # changed since the scan (or a short read): read to the end
            chunks = [data]
            while more := os.read(fd, BLOCK_SIZE):
                chunks.append(more)
            data = b"".join(chunks)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return hash_bytes(data), len(data), st
