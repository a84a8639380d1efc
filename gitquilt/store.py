"""Content-addressed store over a directory: the local cache, and directory remotes.

Layout (DESIGN.md): ``objects/sha256/<2 hex>/<62 hex>`` holds fragment bytes,
``manifests/<top hash>.parquet`` holds manifests. A key only ever holds bytes that
hash to it: bytes are written to ``tmp/``, hashed on the way, checked, made durable
and then linked into place (link-if-absent, so concurrent writers of the same
fragment are harmless).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from gitquilt import fsutil
from gitquilt.digest import BLOCK_SIZE, SMALL_FILE, HashingWriter, check_digest, expect_digest, hash_bytes, is_digest
from gitquilt.errors import IntegrityError, NotFound, QuiltError
from gitquilt.manifest import resolve_prefix
from gitquilt.manifest_text import MAX_TEXT_ENTRIES, try_parse_canonical_text
from gitquilt.manifest_text import SUFFIX as TEXT_SUFFIX
from gitquilt.parquet_writer import manifest_to_parquet

if TYPE_CHECKING:
    from gitquilt.manifest import Manifest

#: Temporary files of dead writers older than this are removed by :meth:`Store.clean_tmp`.
STALE_TMP_SECONDS = 3600
FSYNC_MODES = ("batch", "always", "never")
#: Batches up to this many files fsync each file instead of calling syncfs.
SMALL_BATCH = 8


#: Manifests of up to this many entries, and this many characters of per-entry metadata,
#: are encoded by gitquilt's own Parquet writer (no pyarrow import, ≈ 80 ms of CPU with
#: numpy); others by pyarrow, faster per row, with zstd pages, and splitting a column
#: into pages where the own writer puts a row group's column in one.
OWN_WRITER_MAX_ENTRIES = 100_000
OWN_WRITER_MAX_META_BYTES = 64 << 20


def encode_manifest(manifest: "Manifest") -> bytes:
    """A manifest's Parquet bytes (docs/FORMAT.md), by the cheaper writer for its size."""
    metas = manifest.entry_metas
    if len(manifest) <= OWN_WRITER_MAX_ENTRIES and (
        metas is None or sum(map(len, metas)) <= OWN_WRITER_MAX_META_BYTES
    ):
        return manifest_to_parquet(manifest)
    from gitquilt.manifest_io import manifest_to_bytes

    return manifest_to_bytes(manifest)


class StoreError(QuiltError):
    """The store cannot be read or written (permissions, full disk)."""


def _store_error(exc: OSError, what: str) -> StoreError:
    if exc.errno == errno.ENOSPC:
        return StoreError(f"{what}: no space left on device")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"{what}: permission denied ({exc.strerror})")
    return StoreError(f"{what}: {exc.strerror or exc}")


class Store:
    """A content-addressed directory of fragments and manifests."""

    def __init__(self, root: Path, fsync: str = "batch", read_only_objects: bool = False,
                 text_copies: bool = True) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects" / "sha256"
        self.manifests = self.root / "manifests"
        self.tmp = self.root / "tmp"
        self.quarantine_dir = self.root / "quarantine"
        self.fsync = fsync
        #: Cache files are made read-only when work trees hardlink or symlink to them.
        self.read_only_objects = read_only_objects
        #: Write canonical-text copies of manifests (the cache); a remote holds Parquet only.
        self.text_copies = text_copies

    def ensure(self) -> "Store":
        """Create the directory skeleton (idempotent)."""
        try:
            for d in (self.objects, self.manifests, self.tmp):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _store_error(exc, f"cannot create store at {self.root}") from None
        return self

    # -- fragments ------------------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest[2:]

    def object_file(self, digest: str) -> str:
        """:meth:`object_path` as a string, for hot loops (building a Path costs more than a stat)."""
        return f"{self.objects}/{digest[:2]}/{digest[2:]}"

    def has(self, digest: str) -> bool:
        return os.path.exists(self.object_file(digest))

    def missing(self, digests: Iterable[str]) -> list[str]:
        """The digests not present, sorted."""
        asked = set(digests)
        return sorted(asked - self.present(asked))

    def present(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` the store holds now: a fan-out directory asked about many
        of its names is listed once (a stat per name costs more), else a stat per name."""
        by_dir: dict[str, list[str]] = {}
        for digest in digests:
            by_dir.setdefault(digest[:2], []).append(digest)
        base = str(self.objects)
        found: set[str] = set()
        for sub, asked in by_dir.items():
            path = f"{base}/{sub}"
            try:
                size = os.stat(path).st_size  # grows with the names in it (about 70 bytes each on ext4)
                if size <= LIST_BYTES_PER_ASKED * len(asked):
                    names = set(os.listdir(path))
                    found.update(d for d in asked if d[2:] in names)
                else:
                    found.update(d for d in asked if os.path.exists(f"{path}/{d[2:]}"))
            except (OSError, ValueError):  # no such directory: none of them
                continue
        return found

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.object_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"fragment {digest} is not in the store at {self.root}") from None

    def iter_objects(self) -> Iterator[str]:
        """Every digest stored (order unspecified); stray names are skipped."""
        if not self.objects.is_dir():
            return
        for sub in os.scandir(self.objects):
            if len(sub.name) != 2 or not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                digest = sub.name + entry.name
                if is_digest(digest):
                    yield digest

    def batch(self) -> "WriteBatch":
        """Group writes so that one file-system sync covers them all (see :class:`WriteBatch`)."""
        return WriteBatch(self)

    def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data``; verify against ``expected`` if given. Returns the digest."""
        with self.batch() as b:
            return b.put_bytes(data, expected)

    def put_stream(self, stream: BinaryIO, expected: str, size: int | None = None, where: str = "") -> str:
        """Store a stream that must hash to ``expected`` (and be ``size`` bytes, if given)."""
        with self.batch() as b:
            return b.put_stream(stream, expected, size, where)

    def put_file(self, path: Path, expected: str | None = None) -> tuple[str, int]:
        """Store a file's bytes (copied, hashed on the way). Returns (digest, size)."""
        with self.batch() as b:
            return b.put_file(path, expected)

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.object_path(digest))

    def quarantine(self, digest: str) -> Path:
        """Move a damaged fragment out of the way into ``quarantine/`` and return where."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        dest = self.quarantine_dir / f"{digest}.{int(time.time())}"
        os.replace(self.object_path(digest), dest)
        return dest

    # -- manifests ------------------------------------------------------------------
    def quarantine_manifest(self, top_hash: str) -> Path:
        """Move a damaged manifest into ``quarantine/`` and return where."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        dest = self.quarantine_dir / f"{top_hash}.parquet.{int(time.time())}"
        os.replace(self.manifest_path(top_hash), dest)
        self.drop_manifest_text(top_hash)
        return dest

    def manifest_path(self, top_hash: str) -> Path:
        return self.manifests / f"{top_hash}.parquet"

    def manifest_text_path(self, top_hash: str) -> Path:
        """The cache-only canonical-text copy of a manifest (gitquilt.manifest_text)."""
        return self.manifests / f"{top_hash}{TEXT_SUFFIX}"

    def drop_manifest_text(self, top_hash: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.manifest_text_path(top_hash))

    def check_manifest_text(self, top_hash: str) -> None:
        """Drop the canonical-text copy of a manifest unless it decodes to ``top_hash``."""
        self._read_manifest_text(top_hash)

    def _read_manifest_text(self, top_hash: str) -> "Manifest | None":
        """The manifest from its canonical-text copy, or None when there is no usable copy
        (a damaged or foreign one is dropped: the Parquet file decides)."""
        try:
            text = self.manifest_text_path(top_hash).read_bytes()
        except OSError:
            return None
        manifest = try_parse_canonical_text(text, top_hash)
        if manifest is None:
            self.drop_manifest_text(top_hash)
        return manifest

    def _write_manifest_text(self, manifest: "Manifest") -> None:
        """Best effort: a missing or broken text copy only costs the Parquet read next time."""
        if not self.text_copies or len(manifest) > MAX_TEXT_ENTRIES:
            return
        with contextlib.suppress(OSError):
            fsutil.atomic_write_bytes(self.manifest_text_path(manifest.top_hash), manifest.canonical_text(),
                                      durable=False)

    def has_manifest(self, top_hash: str) -> bool:
        return os.path.exists(self.manifest_path(top_hash))

    def put_manifest(self, manifest: "Manifest", encoded: bytes | None = None) -> str:
        """Write a manifest (Parquet) under its top hash; returns the top hash.
        ``encoded``: its Parquet bytes from :func:`encode_manifest`, if made already."""
        top = manifest.top_hash
        if not self.has_manifest(top):
            if encoded is None:
                encoded = encode_manifest(manifest)
            self.put_manifest_bytes(encoded, top, verified=True)
            self._write_manifest_text(manifest)
        return top

    def put_manifest_bytes(self, data: bytes, top_hash: str, verified: bool = False, where: str = "") -> None:
        """Store Parquet bytes under ``top_hash``; unless ``verified``, decode and check them first."""
        check_digest(top_hash, "top hash")
        decoded = None
        if not verified:
            from gitquilt.manifest_io import read_manifest_bytes

            decoded = read_manifest_bytes(data, top_hash, where or "manifest")
        self.manifests.mkdir(parents=True, exist_ok=True)
        try:
            fsutil.atomic_write_bytes(self.manifest_path(top_hash), data, durable=self.fsync != "never")
        except OSError as exc:
            raise _store_error(exc, f"cannot write manifest {top_hash[:12]} to {self.root}") from None
        if decoded is not None:
            self._write_manifest_text(decoded)

    def read_manifest(self, top_hash: str, parquet_only: bool = False) -> "Manifest":
        """Load and validate a manifest (its content must hash to ``top_hash``).

        The canonical-text copy is read when present (no pyarrow import); it is
        self-verifying, and a damaged one is dropped for the Parquet file, the authority.
        ``parquet_only`` reads the Parquet file (``verify``).
        """
        path = self.manifest_path(top_hash)
        if not path.exists():
            raise NotFound(f"manifest {top_hash} is not in the store at {self.root}")
        if not parquet_only:
            from_text = self._read_manifest_text(top_hash)
            if from_text is not None:
                return from_text
        from gitquilt.manifest_io import read_manifest_file

        manifest = read_manifest_file(str(path), top_hash, where=f"manifest in {self.root}")
        self._write_manifest_text(manifest)
        return manifest

    def manifest_bytes(self, top_hash: str) -> bytes:
        try:
            return self.manifest_path(top_hash).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"manifest {top_hash} is not in the store at {self.root}") from None

    def iter_manifests(self) -> Iterator[str]:
        if not self.manifests.is_dir():
            return
        for entry in os.scandir(self.manifests):
            name = entry.name
            if name.endswith(".parquet") and is_digest(name[:-8]):
                yield name[:-8]

    def resolve(self, prefix: str) -> str:
        """Resolve a top-hash prefix (≥ 7 hex) against the stored manifests."""
        if is_digest(prefix):
            return prefix
        return resolve_prefix(prefix, self.iter_manifests())

    # -- housekeeping -----------------------------------------------------------------
    def clean_tmp(self, max_age: float = STALE_TMP_SECONDS) -> int:
        """Remove temporary files left by dead writers (kill -9). Returns how many.

        Besides ``tmp/``, the directories whose files are written by a temporary file
        renamed into place beside them (``manifests/``, and ``packs/`` where the cache
        keeps copies of pack indexes) are swept for names of that temporary shape."""
        return (self._sweep(self.tmp, max_age, any_name=True)
                + self._sweep(self.manifests, max_age) + self._sweep(self.root / "packs", max_age))

    @staticmethod
    def _sweep(directory: Path, max_age: float, any_name: bool = False) -> int:
        removed = 0
        now = time.time()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return 0
        for entry in entries:
            pid = fsutil.tmp_owner_pid(entry.name)
            if pid is None and not any_name:
                continue
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            dead = pid is not None and not fsutil.pid_alive(pid)
            if dead or age > max_age:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
        return removed


#: Numbers for temporary file names; the random start keeps them apart from a dead
#: process's leftovers that had the same pid.
_TMP_IDS = itertools.count(secrets.randbits(32))
#: Directory fsyncs run this many at a time (each waits on the disk, not the CPU).
FSYNC_THREADS = 8
#: :meth:`Store.present` lists a fan-out directory whose size is at most this many
#: bytes per name asked about (reading a name from a listing costs far less than a stat).
LIST_BYTES_PER_ASKED = 1024
#: A commit that gave names in more directories than this flushes them with one
#: ``syncfs`` instead of an ``fsync`` per directory (up to 257 of them otherwise).
SYNCFS_DIRS = 16
#: Write fragments as anonymous files (``O_TMPFILE``) where the file system allows it:
#: no name is created in ``tmp/`` and none removed, threads do not contend for its
#: lock, and a killed writer leaves nothing behind. GITQUILT_NO_TMPFILE=1 turns it off
#: (tests use it to cover named temporary files).
USE_ANONYMOUS_TMP = os.environ.get("GITQUILT_NO_TMPFILE", "") in ("", "0")
#: Anonymous fragments pending in one batch, at most; each holds a file descriptor until
#: the commit, so the descriptor limit lowers this (see :func:`_pending_fd_cap`).
MAX_PENDING_FDS = 16384
#: Below this many descriptors to spare, named temporary files are used instead (a
#: commit, with its sync, every few hundred files would cost more than the names).
MIN_PENDING_FDS = 1024

_PID = os.getpid()  # os.getpid() is a system call; temp names are made per fragment


def _after_fork() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_after_fork)

_setup_lock = threading.Lock()
_anonymous_ok: dict[str, bool] = {}  # tmp directory → O_TMPFILE files can be linked from it
_proc_dir_fd: int | None = None
_fd_cap: int | None = None


def _proc_fd() -> int:
    """A descriptor of /proc, kept for the process: ``linkat`` of ``self/fd/N`` names an open file."""
    global _proc_dir_fd
    if _proc_dir_fd is None:
        with _setup_lock:
            if _proc_dir_fd is None:
                _proc_dir_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return _proc_dir_fd


def _link_fd(fd: int, final: str) -> None:
    """Give the open anonymous file ``fd`` the name ``final`` (FileExistsError if taken)."""
    # through /proc: linkat(AT_EMPTY_PATH) needs a capability that ordinary users lack
    os.link(f"self/fd/{fd}", final, src_dir_fd=_proc_fd(), follow_symlinks=True)


def _anonymous_supported(tmp_dir: str) -> bool:
    """Whether ``tmp_dir`` takes ``O_TMPFILE`` files and /proc can name them for ``linkat``
    (learned once per directory). Should linking still fail, the commit copies the file
    to a named temporary file instead (:meth:`WriteBatch._link_by_copy`)."""
    ok = _anonymous_ok.get(tmp_dir)
    if ok is not None:
        return ok
    ok = False
    flag = getattr(os, "O_TMPFILE", 0)
    if flag and os.path.isdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            os.close(os.open(tmp_dir, os.O_RDWR | flag | os.O_CLOEXEC, 0o644))
            ok = True
    _anonymous_ok[tmp_dir] = ok
    return ok


def _pending_fd_cap() -> int:
    """How many anonymous fragments one batch may hold open. The soft descriptor limit
    is raised towards the hard one first (allowed to any process; often 1,024 vs 500,000+)."""
    global _fd_cap
    if _fd_cap is None:
        import resource

        want = 4 * MAX_PENDING_FDS + 1024
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if soft != resource.RLIM_INFINITY and soft < want:
                new = want if hard == resource.RLIM_INFINITY else min(want, hard)
                if new > soft:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                    soft = new
        except (OSError, ValueError):
            soft = 1024
        # half the spare descriptors: a transfer may have two batches open (cache and remote)
        spare = want if soft == resource.RLIM_INFINITY else (soft - 512) // 2
        _fd_cap = max(0, min(MAX_PENDING_FDS, spare))
    return _fd_cap


def _fsync_dirs(dirs: list[str]) -> None:
    """fsync each directory; many at once, since each one mostly waits for the disk."""
    if len(dirs) <= 2:
        for d in dirs:
            fsutil.fsync_dir(d)
        return
    errors: list[OSError] = []
    slices = [dirs[i::FSYNC_THREADS] for i in range(min(FSYNC_THREADS, len(dirs)))]

    def run(part: list[str]) -> None:
        try:
            for d in part:
                fsutil.fsync_dir(d)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(part,), name="gitquilt-fsync") for part in slices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise _store_error(errors[0], "cannot make the stored fragments durable")


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (no file object: one system call per small file)."""
    n = os.write(fd, data)
    if n < len(data):
        view = memoryview(data)[n:]
        while view:
            view = view[os.write(fd, view) :]


def _read_small(fd: int, size: int) -> bytes:
    """Read a file of about ``size`` bytes to its end, usually in one system call."""
    data = os.read(fd, size + 1)  # one byte more than expected: EOF is seen without a second read
    if len(data) == size:
        return data
    chunks = [data]
    while chunk := os.read(fd, BLOCK_SIZE):
        chunks.append(chunk)
    return b"".join(chunks)


def _release(tmp: str | int) -> None:
    """Drop a temporary file: unlink a named one, close an anonymous one (it vanishes)."""
    with contextlib.suppress(OSError):
        if isinstance(tmp, int):
            os.close(tmp)
        else:
            os.unlink(tmp)


class WriteBatch:
    """Writes fragments to temporary files and links them into place together on commit.

    A temporary file is anonymous (``O_TMPFILE`` in ``tmp/``, held open until the
    commit) where the file system supports it, else named in ``tmp/``. Order on commit,
    for durability (RELIABILITY.md §28): the file data is flushed (one ``syncfs`` for
    the batch, or ``fsync`` per file with ``fsync = "always"``) before any file is
    linked under its final name, and the directories that gained names are fsynced
    after (one ``syncfs`` when there are many). Once enough is pending, a background
    thread commits it while the writers go on; :meth:`commit` waits for that thread, so
    everything put is durable when the batch ends. A background commit leaves its new
    names to the next commit's ``syncfs`` (which flushes them with that commit's data)
    or to the final commit: one sync per background commit instead of two, and nothing
    reads a name before the batch ends. Thread-safe: worker threads may put
    concurrently.
    """

    #: Commit automatically once this many named temporary files are pending, to bound ``tmp/``.
    MAX_PENDING = 4096
    #: Once this many files or bytes are pending, a background thread commits them while
    #: the writers go on (its sync waits for the disk; one at a time).
    BACKGROUND_FILES = 512
    BACKGROUND_BYTES = 16 << 20

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[str | int, str]] = []  # (temp file name or open descriptor, digest)
        self._tmp_dir = str(store.tmp)
        self._objects_dir = str(store.objects)
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        self._aborted = False
        self._anonymous: bool | None = None  # decided on the first write
        self._max_pending = self.MAX_PENDING
        #: objects/sha256/xx directories seen (None: not listed yet); a digest whose
        #: directory is absent is not stored, without a stat per fragment
        self._fanout: set[str] | None = None
        self._pending_bytes = 0
        self._background: threading.Thread | None = None  # the commit running behind the writers
        self._background_error: BaseException | None = None
        #: directories that gained names in a background commit, not yet synced since
        self._names_unsynced: set[str] = set()
        self._commit_lock = threading.Lock()  # one commit at a time (see _commit_items)
        store.ensure()

    def __enter__(self) -> "WriteBatch":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def _use_anonymous(self) -> bool:
        if self._anonymous is None:
            cap = _pending_fd_cap()
            anonymous = USE_ANONYMOUS_TMP and cap >= MIN_PENDING_FDS and _anonymous_supported(self._tmp_dir)
            if anonymous:
                self._max_pending = cap
            self._anonymous = anonymous
        return self._anonymous

    def _new_tmp(self) -> tuple[str | None, int]:
        """A temporary file open for writing: (None, fd) if anonymous, else (name, fd)."""
        if self._aborted:
            raise StoreError("write batch was aborted")
        if self._anonymous or (self._anonymous is None and self._use_anonymous()):
            try:
                return None, os.open(self._tmp_dir, os.O_RDWR | os.O_TMPFILE | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise _store_error(exc, f"cannot write to {self.store.tmp}") from None
        for _attempt in range(100):
            # fsutil.tmp_name's shape (cleanup finds dead writers by the pid), numbered
            # instead of random: cheaper, and unique within this process
            name = f"{self._tmp_dir}/.frag.{_PID}.{next(_TMP_IDS) & 0xFFFFFFFF:08x}{fsutil.TMP_SUFFIX}"
            try:
                return name, os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:  # left by a dead process that had our pid
                continue
            except OSError as exc:
                raise _store_error(exc, f"cannot write to {self.store.tmp}") from None
        raise StoreError(f"cannot create a temporary file in {self.store.tmp}")

    def _maybe_stored(self, digest: str) -> bool:
        fanout = self._fanout
        if fanout is None:
            try:
                fanout = set(os.listdir(self._objects_dir))
            except OSError:
                fanout = set()
            self._fanout = fanout
        # a directory made since the listing (by this batch, or another writer) holds
        # nothing this batch needs to know: its own are claimed, another writer's only
        # cost a duplicate write (linking it finds the name taken)
        return digest[:2] in fanout and self.store.has(digest)

    def stored(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` the store holds now (:meth:`Store.present`)."""
        return self.store.present(digests)

    def _claim(self, digest: str) -> bool:
        """True if this batch should write ``digest`` (absent and not already pending)."""
        if digest in self._claimed:  # read without the lock: checked again under it
            return False
        if self._maybe_stored(digest):  # outside the lock: a stat must not hold up the other threads
            return False
        with self._lock:
            if digest in self._claimed:
                return False
            self._claimed.add(digest)
            return True

    def _queue(self, tmp: str | int, digest: str, size: int) -> None:
        """Hand a complete, claimed temporary file to the commit; it is the batch's from
        here on, whatever happens (queued, or released if the batch was aborted)."""
        with self._lock:
            if self._aborted or self._background_error is not None:
                _release(tmp)  # a worker thread finishing after Ctrl-C or a failure: leave nothing behind
                raise StoreError(str(self._background_error or "write batch was aborted"))
            self._pending.append((tmp, digest))
            self._pending_bytes += size
            count = len(self._pending)
            due = count >= self.BACKGROUND_FILES or self._pending_bytes >= self.BACKGROUND_BYTES
            if due and self._background is None:
                items, self._pending, self._pending_bytes = self._pending, [], 0
                self._background = threading.Thread(
                    target=self._commit_behind, args=(items,), name="gitquilt-commit", daemon=True
                )
                self._background.start()
                return
        if count >= self._max_pending:  # the background commit lags: commit here, bounding tmp/ and descriptors
            self.commit()

    def _commit_behind(self, items: list[tuple[str | int, str]]) -> None:
        try:
            self._commit_items(items, sync_names=False)
        except BaseException as exc:  # noqa: BLE001 - told to the writers and raised by the final commit
            with self._lock:
                self._background_error = exc
        finally:
            with self._lock:
                self._background = None

    def _wait_background(self) -> None:
        with self._lock:
            running = self._background
        if running is not None:
            running.join()

    def _queue_unless_stored(self, tmp: str | int, digest: str, size: int) -> None:
        """:meth:`_queue`, or drop the file when the digest is stored or pending already."""
        if self._claim(digest):
            self._queue(tmp, digest, size)
        else:
            _release(tmp)

    def _unclaim(self, digest: str) -> None:
        with self._lock:
            self._claimed.discard(digest)

    def _finish_tmp(self, fd: int) -> None:
        if self.store.fsync == "always":
            os.fsync(fd)
        if self.store.read_only_objects:
            os.fchmod(fd, 0o444)

    def put_bytes(self, data: bytes | memoryview, expected: str | None = None, where: str = "") -> str:
        digest = hash_bytes(data)
        if expected is not None:
            expect_digest(digest, expected, len(data), where or f"fragment {expected}")
        if not self._claim(digest):
            return digest
        name, fd = self._new_tmp()
        try:
            _write_all(fd, data)
            self._finish_tmp(fd)
            if name is not None:
                fd, closing = -1, fd  # closed even if close() reports an error
                os.close(closing)
        except BaseException as exc:
            self._unclaim(digest)
            if fd >= 0:
                _release(fd)
            if name is not None:
                _release(name)
            if isinstance(exc, OSError):
                raise _store_error(exc, f"cannot write fragment {digest[:12]} to {self.store.root}") from None
            raise
        self._queue(fd if name is None else name, digest, len(data))
        return digest

    def put_stream(self, stream: BinaryIO, expected: str, size: int | None = None, where: str = "") -> str:
        """Copy a stream into the store, verifying digest and size; nothing is kept on mismatch."""
        if self.store.has(expected):
            return expected
        name, fd = self._new_tmp()
        ok = False
        try:
            # an anonymous file stays open until the commit links it
            with os.fdopen(fd, "wb", closefd=name is not None) as raw:
                w = HashingWriter(raw)
                limit = None if size is None else size + 1
                while True:
                    want = BLOCK_SIZE if limit is None else min(BLOCK_SIZE, limit - w.size)
                    if want <= 0:
                        break
                    chunk = stream.read(want)
                    if not chunk:
                        break
                    w.write(chunk)
                raw.flush()
                self._finish_tmp(raw.fileno())
            label = where or f"fragment {expected}"
            if size is not None and w.size != size:
                raise IntegrityError(f"{label}: expected {size} bytes, got {w.size if w.size <= size else 'more'}")
            expect_digest(w.hexdigest(), expected, w.size, label)
            ok = True
        except OSError as exc:
            raise _store_error(exc, f"cannot write fragment {expected[:12]} to {self.store.root}") from None
        finally:
            if not ok:
                _release(fd if name is None else name)
        self._queue_unless_stored(fd if name is None else name, expected, w.size)
        return expected

    def put_file(self, path: Path | str, expected: str | None = None) -> tuple[str, int]:
        """Hash a file and copy it into the store in one pass. Returns (digest, size)."""
        digest, size, _st = self.put_file_stat(path, expected=expected)
        return digest, size

    def put_file_stat(
        self, path: Path | str, size_hint: int = -1, expected: str | None = None
    ) -> tuple[str, int, os.stat_result]:
        """:meth:`put_file`, also returning the file's stat taken on the open file after
        reading it (a caller compares it with its scan to know the bytes are the file's).

        ``size_hint``, the size a scan saw, saves a system call; a wrong one costs a few.
        """
        try:
            # no file object: fewer system calls; never through a symlink swapped in since
            # the scan, never blocking on a FIFO
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                if size_hint < 0:
                    size_hint = os.fstat(src).st_size
                data: bytes | None = None
                if size_hint <= SMALL_FILE:
                    data = os.read(src, size_hint + 1)  # one byte more: EOF seen without a second read
                    if len(data) > size_hint:  # grew since the scan, maybe a lot: stream it
                        data = None
                        os.lseek(src, 0, os.SEEK_SET)
                    elif len(data) < size_hint:  # shrank, or a short read: read to the end
                        data += _read_small(src, 0)
                if data is None:
                    digest, size = self._copy_large(src, path, expected)
                st = os.fstat(src)
            finally:
                os.close(src)
        except OSError as exc:
            raise _store_error(exc, f"cannot store {path}") from None
        if data is not None:
            return self.put_bytes(data, expected, str(path)), len(data), st
        return digest, size, st

    def _copy_large(self, src: int, path: Path | str, expected: str | None) -> tuple[str, int]:
        """Stream the open file ``src`` into a temporary file, hashing on the way."""
        name, fd = self._new_tmp()
        ok = False
        try:
            with os.fdopen(fd, "wb", closefd=name is not None) as raw:
                w = HashingWriter(raw)
                # a new block each read: faster here than readv() into one reused buffer
                # (see digest.hash_stream)
                while block := os.read(src, BLOCK_SIZE):
                    w.write(block)
                raw.flush()
                self._finish_tmp(raw.fileno())
            digest = w.hexdigest()
            if expected is not None:
                expect_digest(digest, expected, w.size, str(path))
            ok = True
        finally:
            if not ok:
                _release(fd if name is None else name)
        self._queue_unless_stored(fd if name is None else name, digest, w.size)
        return digest, w.size

    def commit(self) -> None:
        """Flush pending data, link each file under its final name, fsync the directories
        (after the background commit, if one runs, is done: all is durable on return)."""
        self._wait_background()
        with self._lock:
            pending, self._pending, self._pending_bytes = self._pending, [], 0
            error, self._background_error = self._background_error, None
        if error is not None:
            self._release_all(pending)
            raise error
        self._commit_items(pending, sync_names=True)

    def _commit_items(self, pending: list[tuple[str | int, str]], sync_names: bool) -> None:
        """Flush the data of ``pending``, link each under its name; sync the new names (and
        those earlier commits left) if ``sync_names``, else leave them to the next commit.
        Commits never overlap (a writer thread may commit while a background commit
        starts), so a ``syncfs`` here covers every name in ``_names_unsynced``."""
        with self._commit_lock:
            self._commit_locked(pending, sync_names)

    def _commit_locked(self, pending: list[tuple[str | int, str]], sync_names: bool) -> None:
        if not pending and not (sync_names and self._names_unsynced):
            return
        dirs: set[str] = set()
        objects = self._objects_dir
        released = 0  # pending[:released] are linked and their temporary files gone
        try:
            if self.store.fsync == "batch":
                if len(pending) <= SMALL_BATCH:
                    for tmp, _digest in pending:  # a few files: cheaper than flushing the whole fs
                        if isinstance(tmp, int):
                            os.fsync(tmp)
                        else:
                            fsutil.fsync_file(tmp)
                else:
                    fsutil.syncfs(self.store.tmp)
                    self._names_unsynced.clear()  # the earlier commits' names went with it
            for tmp, digest in pending:
                parent = f"{objects}/{digest[:2]}"
                final = f"{parent}/{digest[2:]}"
                if isinstance(tmp, int):
                    try:
                        self._link_anonymous(tmp, parent, final, dirs)
                    finally:
                        released += 1
                        os.close(tmp)
                else:
                    self._link_named(tmp, parent, final, dirs)
                    released += 1
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                dirs.add(parent)
        except BaseException as exc:  # Ctrl-C included: no temp file may outlive us
            self._release_all(pending[released:])
            if isinstance(exc, OSError):
                raise _store_error(exc, f"cannot store fragments in {self.store.root}") from None
            raise
        if self.store.fsync == "never":
            return
        if not sync_names:
            self._names_unsynced |= dirs
            return
        dirs |= self._names_unsynced
        if len(dirs) > SYNCFS_DIRS:
            fsutil.syncfs(self.store.tmp)  # the new names, all directories at once
        else:
            _fsync_dirs(sorted(dirs))
        self._names_unsynced.clear()

    def _made_dir(self, parent: str, dirs: set[str]) -> None:
        # not added to self._fanout: what this batch puts there, it knows (self._claimed)
        os.makedirs(parent, exist_ok=True)
        dirs.add(self._objects_dir)

    def _link_anonymous(self, fd: int, parent: str, final: str, dirs: set[str]) -> None:
        try:
            try:
                _link_fd(fd, final)
            except FileNotFoundError:  # no objects/sha256/xx yet (or no /proc after all)
                self._made_dir(parent, dirs)
                _link_fd(fd, final)
        except FileExistsError:
            pass  # another writer stored the same bytes first
        except OSError:
            self._link_by_copy(fd, parent, final, dirs)

    def _link_by_copy(self, fd: int, parent: str, final: str, dirs: set[str]) -> None:
        """The anonymous file cannot be linked here: copy it to a named temporary file,
        flush that, link it. Later writes of this batch use named files."""
        self._anonymous = False
        self._max_pending = self.MAX_PENDING
        name, out = self._new_tmp()
        assert name is not None
        try:
            try:
                offset = 0
                while chunk := os.pread(fd, BLOCK_SIZE, offset):
                    _write_all(out, chunk)
                    offset += len(chunk)
                if self.store.read_only_objects:
                    os.fchmod(out, 0o444)
                if self.store.fsync != "never":
                    os.fsync(out)  # the batch's flush happened before this file existed
            finally:
                os.close(out)
            self._link_named(name, parent, final, dirs)
        finally:
            _release(name)

    def _link_named(self, tmp: str, parent: str, final: str, dirs: set[str]) -> None:
        try:
            os.link(tmp, final)
        except FileNotFoundError:
            self._made_dir(parent, dirs)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, final)
        except FileExistsError:
            pass  # another writer stored the same bytes first
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            os.replace(tmp, final)  # no hard links here: rename identical bytes

    def abort(self) -> None:
        """Drop temporary files not yet linked (a background commit finishes its own first)."""
        with self._lock:
            self._aborted = True
            pending, self._pending = self._pending, []
        self._release_all(pending)
        self._wait_background()

    @staticmethod
    def _release_all(pending: list[tuple[str | int, str]]) -> None:
        for tmp, _digest in pending:
            _release(tmp)
