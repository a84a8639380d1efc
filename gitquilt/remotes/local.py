"""A directory remote: a plain directory (or a shared drive) with the cache's layout.

Every object is written to ``tmp/``, hashed on the way, verified, made durable and
linked into place: a key never holds bytes that do not hash to it (nor partial bytes),
and two clones writing the same fragment at once are harmless (link-if-absent). Small
fragments go through :class:`gitquilt.store.WriteBatch` (one file-system sync per
batch, as in the cache; :meth:`flush` links the batch). Large ones (at least
:data:`DIRECT_MIN`) are copied, hashed, ``fsync``-ed and linked by the worker thread
that moves them, so their writeback overlaps the other transfers. The transfer engine
flushes before it uploads any manifest, so a manifest never names a fragment that is
not in place.

Two fast paths the transfer engine uses when the backend offers them (wrappers such as
the fault-injecting remote do not, and take the plain :meth:`put`):

* :meth:`DirectoryRemote.put_file` uploads a local file (a cache object):
  ``copy_file_range`` into the temporary file (no bytes through Python), then the
  *temporary file* is hashed through ``mmap`` — what is linked is exactly what was
  hashed, even if the source changes meanwhile. Where ``copy_file_range`` is refused
  (another file system type, an old kernel) a read/hash/write loop over one reused
  buffer does the same.
* :meth:`DirectoryRemote.staging_dir` / :meth:`DirectoryRemote.put_staged`: a pack is
  built straight into the remote's ``tmp/`` (hashed as it is written, as the cache's
  writes are) and then ``fsync``-ed and linked into place: no second copy, no re-read.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import mmap
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from gitquilt import fsutil
from gitquilt.digest import BLOCK_SIZE, expect_digest
from gitquilt.errors import IntegrityError, NotFound, QuiltError, RemotePermanent
from gitquilt.remotes import (
    Capabilities,
    ObjectInfo,
    ObjectMissing,
    PendingUpload,
    RequestCounter,
    check_key,
    parse_key,
)
from gitquilt.remotes.streams import LimitedReader, read_exactly
from gitquilt.store import Store, StoreError, WriteBatch

#: Directories of the store that are not part of the remote's key space.
_PRIVATE = {"tmp", "quarantine"}
#: Fragments at least this large are written, synced and linked one by one (see the module doc).
DIRECT_MIN = 1 << 20
#: Bytes copied and hashed per step (one mapping of the temporary file at a time: mapped
#: page-cache pages count in the resident size, 4 × 64 MiB would show as 256 MB).
MAP_CHUNK = 8 << 20
#: ``copy_file_range`` errors that mean "not here": fall back to reading and writing.
_NO_COPY_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM, errno.ETXTBSY)


class DirectoryRemote:
    """A :class:`~gitquilt.remotes.Remote` over a local directory."""

    def __init__(self, root: Path, fsync: str = "batch") -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.store = Store(self.root, fsync=fsync, text_copies=False)
        self.requests = RequestCounter()
        self._batch: WriteBatch | None = None
        self._lock = threading.Lock()
        self._ready = False
        self._dirs: set[str] = set()  # directories that gained names since the last flush

    # -- helpers --------------------------------------------------------------------
    def _fail(self, exc: BaseException, what: str) -> RemotePermanent:
        if isinstance(exc, StoreError):
            detail = str(exc).rpartition(": ")[2]
        elif isinstance(exc, OSError):
            if exc.errno == errno.ENOSPC:
                detail = "no space left on device"
            elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                detail = f"permission denied ({exc.strerror})"
            else:
                detail = exc.strerror or str(exc)
        else:
            detail = str(exc)
        return RemotePermanent(f"directory remote {self.root}: {what}: {detail}")

    def _ensure_writable(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            if not self.root.is_dir():
                if not self.root.parent.is_dir():
                    raise RemotePermanent(
                        f"directory remote {self.root} does not exist, nor does its parent (is the drive mounted?)"
                    )
                try:
                    self.root.mkdir(exist_ok=True)
                except OSError as exc:
                    raise self._fail(exc, "cannot create it") from None
            try:
                self.store.ensure()
            except StoreError as exc:
                raise self._fail(exc, "cannot write") from None
            self._ready = True

    def _check_readable(self) -> None:
        """A missing remote directory is an empty remote, unless its parent is missing too
        (an unmounted drive must not look like an empty remote)."""
        if not self.root.is_dir() and not self.root.parent.is_dir():
            raise RemotePermanent(f"directory remote {self.root} does not exist, nor does its parent (is the drive mounted?)")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    # -- protocol --------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return Capabilities(conditional_put=True, server_checksum=True, parallel_ranges=False, multipart=False,
                            seekable_get=True)

    def probe(self) -> Capabilities:
        return self.capabilities()

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        self.requests.add("list")
        self._check_readable()
        # walk only the directories the prefix can reach, in sorted order
        base, _, _leaf = prefix.rpartition("/")
        start_dir = self.root / base if base else self.root
        yield from self._walk(start_dir, base + "/" if base else "", prefix, start_after)

    def _walk(self, directory: Path, rel: str, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._fail(exc, "cannot list") from None
        for entry in entries:
            key = rel + entry.name
            if not rel and entry.name in _PRIVATE:
                continue
            if fsutil.tmp_owner_pid(entry.name) is not None:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    sub = key + "/"
                    # descend only where keys may start with the prefix
                    if (sub.startswith(prefix) or prefix.startswith(sub)) and not (
                        start_after is not None and sub < start_after[: len(sub)]
                    ):
                        yield from self._walk(Path(entry.path), sub, prefix, start_after)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                if not key.startswith(prefix) or (start_after is not None and key <= start_after):
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield ObjectInfo(key, st.st_size, st.st_mtime)

    def get(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        self.requests.add("get")
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            self._check_readable()
            raise ObjectMissing(f"{key} is not on the directory remote {self.root}") from None
        except OSError as exc:
            raise self._fail(exc, f"cannot read {key}") from None
        f = os.fdopen(fd, "rb")
        if start:
            f.seek(start)
        if length is None:
            return f  # seekable: a pack reader seeks between ranges of one open file
        return LimitedReader(f, length)  # type: ignore[return-value]

    def put(self, key: str, source: BinaryIO, size: int, sha256: str | None = None, overwrite: bool = False) -> bool:
        self.requests.add("put")
        self._ensure_writable()
        parsed = parse_key(check_key(key))
        try:
            if parsed is not None and parsed[0] == "fragment":
                return self._put_fragment(parsed[1], source, size, sha256, overwrite, key)
            if parsed is not None and parsed[0] == "manifest":
                return self._put_manifest(parsed[1], source, size, sha256, overwrite, key)
            return self._put_other(key, source, size, sha256, overwrite)
        except (IntegrityError, RemotePermanent):
            raise
        except StoreError as exc:
            raise self._fail(exc, f"cannot store {key}") from None
        except OSError as exc:
            raise self._fail(exc, f"cannot store {key}") from None

    def _put_fragment(self, digest: str, source: BinaryIO, size: int, sha256: str | None,
                      overwrite: bool, key: str) -> bool:
        if sha256 is not None and sha256 != digest:
            raise IntegrityError(f"upload of {key}: announced sha256 {sha256} differs from the key")
        exists = self.store.has(digest)
        if exists and not overwrite:
            return False
        if size >= DIRECT_MIN:
            fd, tmp = self._new_tmp("frag")
            return self._install(fd, tmp, key, digest, size, overwrite,
                                 lambda: _copy_stream(source, fd, size), check_size=True)
        if exists:
            self.store.delete(digest)
        with self._lock:
            if self._batch is None:
                self._batch = self.store.batch()
            batch = self._batch
        batch.put_stream(source, digest, size, where=f"upload of {key}")
        return True

    # -- fast paths (optional: the engine looks for them with getattr) -------------------
    def put_file(self, key: str, path: str | os.PathLike[str], size: int, sha256: str | None = None,
                 overwrite: bool = False, on_bytes: Callable[[int], None] | None = None) -> bool:
        """:meth:`put` of a local file (a cache object), copied in the kernel where possible.

        The bytes land in a temporary file by ``copy_file_range`` (or, where that is
        refused, a read/write loop over one reused buffer); the temporary file itself
        is then hashed, so what gets linked is exactly what was checked against
        ``sha256``. Same results and errors as :meth:`put`; ``on_bytes`` reports progress.
        """
        parsed = parse_key(check_key(key))
        if parsed is None or parsed[0] != "fragment" or size < DIRECT_MIN:
            with open(path, "rb") as f:
                done = self.put(key, f, size, sha256, overwrite)
            if on_bytes is not None:
                on_bytes(size)
            return done
        self.requests.add("put")
        self._ensure_writable()
        digest = parsed[1]
        if sha256 is not None and sha256 != digest:
            raise IntegrityError(f"upload of {key}: announced sha256 {sha256} differs from the key")
        try:
            if self.store.has(digest) and not overwrite:
                return False
            try:
                src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise NotFound(f"{path} to upload as {key} does not exist") from None
            try:
                fd, tmp = self._new_tmp("frag")
                return self._install(fd, tmp, key, digest, size, overwrite,
                                     lambda: _copy_file(src, fd, size, on_bytes), check_size=True)
            finally:
                os.close(src)
        except (IntegrityError, RemotePermanent, NotFound):
            raise
        except (StoreError, OSError) as exc:
            raise self._fail(exc, f"cannot store {key}") from None

    def staging_dir(self) -> Path:
        """Where the engine may build an object (a pack) for :meth:`put_staged`: the remote's ``tmp/``."""
        self._ensure_writable()
        return self.store.tmp

    def put_staged(self, key: str, path: str | os.PathLike[str], size: int, sha256: str,
                   overwrite: bool = False) -> bool:
        """Link a file the caller built in :meth:`staging_dir` under ``key`` (the file stays the caller's to remove).

        The caller vouches for ``sha256``: it hashed the bytes as it wrote them, which
        is the guarantee every cache and remote write gives (hash while writing, then
        link). The size is checked, the data made durable before the link, and the
        directory after it. A file outside the staging directory is copied instead.
        """
        path = Path(path)
        if path.parent != self.store.tmp:
            return self.put_file(key, path, size, sha256, overwrite)
        self.requests.add("put")
        final = self._path(key)
        try:
            if final.exists() and not overwrite:
                return False
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                actual = os.fstat(fd).st_size
                if actual != size:
                    raise IntegrityError(f"upload of {key}: expected {size} bytes, got {actual}")
                if self.store.fsync != "never":
                    os.fsync(fd)
            finally:
                os.close(fd)
            final.parent.mkdir(parents=True, exist_ok=True)
            if overwrite:
                # a second name for the caller's file, renamed over the old object
                spare = self.store.tmp / fsutil.tmp_name("put")
                os.link(path, spare)
                os.replace(spare, final)
            else:
                try:
                    os.link(path, final)
                except FileExistsError:
                    return False
            if self.store.fsync != "never":
                fsutil.fsync_dir(final.parent)
            return True
        except (IntegrityError, RemotePermanent):
            raise
        except OSError as exc:
            raise self._fail(exc, f"cannot store {key}") from None

    def _new_tmp(self, what: str) -> tuple[int, str]:
        tmp = str(self.store.tmp / fsutil.tmp_name(what))
        return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), tmp

    def _install(self, fd: int, tmp: str, key: str, digest: str | None, size: int, overwrite: bool,
                 fill: Callable[[], tuple[int, str]], check_size: bool) -> bool:
        """Fill the temporary file ``fd`` (``fill`` returns its size and sha256), check it
        against ``digest`` and ``size``, make it durable and link it under ``key``."""
        ok = False
        final = self._path(key)
        try:
            try:
                got, actual = fill()
                if check_size and got != size:
                    raise IntegrityError(f"upload of {key}: expected {size} bytes, got {got}")
                if digest is not None:
                    expect_digest(actual, digest, got, f"upload of {key}")
                if self.store.fsync != "never":
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                ok = self._link(tmp, final, overwrite)
            except FileNotFoundError:
                final.parent.mkdir(parents=True, exist_ok=True)
                with self._lock:
                    self._dirs.add(str(final.parent.parent))
                ok = self._link(tmp, final, overwrite)
            if ok:
                with self._lock:
                    self._dirs.add(str(final.parent))
            return ok
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    @staticmethod
    def _link(tmp: str, final: Path, overwrite: bool) -> bool:
        if overwrite:
            os.replace(tmp, final)
            return True
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False  # another writer stored the same bytes first
        return True

    def _put_manifest(self, top: str, source: BinaryIO, size: int, sha256: str | None,
                      overwrite: bool, key: str) -> bool:
        self.flush()  # the fragments a manifest names go in place before it
        if self.store.has_manifest(top) and not overwrite:
            return False
        data = read_exactly(source, size, f"upload of {key}")
        if sha256 is not None:
            from gitquilt.remotes.streams import check_bytes

            check_bytes(data, sha256, f"upload of {key}")
        try:
            self.store.put_manifest_bytes(data, top, where=f"upload of {key}")
        except (StoreError, IntegrityError):
            raise
        except QuiltError as exc:  # a manifest that does not decode to its name
            raise IntegrityError(f"upload of {key}: {exc}") from None
        return True

    def _put_other(self, key: str, source: BinaryIO, size: int, sha256: str | None, overwrite: bool) -> bool:
        final = self._path(key)
        if final.exists() and not overwrite:
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = self._new_tmp("put")
        ok = self._install(fd, tmp, key, sha256, size, overwrite, lambda: _copy_stream(source, fd, size),
                           check_size=True)
        if ok and self.store.fsync != "never":
            fsutil.fsync_dir(final.parent)  # an index goes up right after its pack: both must last
        return ok

    def size(self, key: str) -> int | None:
        self.requests.add("head")
        try:
            return os.stat(self._path(key), follow_symlinks=False).st_size
        except FileNotFoundError:
            self._check_readable()
            return None
        except OSError as exc:
            raise self._fail(exc, f"cannot stat {key}") from None

    def delete(self, key: str) -> None:
        self.requests.add("delete")
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail(exc, f"cannot delete {key}") from None

    def flush(self) -> None:
        with self._lock:
            batch = self._batch
            dirs, self._dirs = self._dirs, set()
        try:
            if batch is not None:
                batch.commit()
            if self.store.fsync != "never":
                for d in sorted(dirs):
                    fsutil.fsync_dir(d)
        except StoreError as exc:
            raise self._fail(exc, "cannot store fragments") from None
        except OSError as exc:
            raise self._fail(exc, "cannot store fragments") from None

    def list_uploads(self) -> builtins.list[PendingUpload]:
        return []

    def abort_upload(self, upload: PendingUpload) -> None:
        pass

    def request_count(self) -> int:
        return self.requests.total()

    def close(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, None
        if batch is not None:
            batch.abort()


# -- copying with one hash ------------------------------------------------------------------
def _copy_stream(source: BinaryIO, fd: int, size: int) -> tuple[int, str]:
    """Copy up to ``size`` bytes (one more, to notice a longer source) from ``source`` into
    ``fd`` through one reused buffer, hashing them; returns (bytes copied, sha256)."""
    h = hashlib.sha256()
    buf = bytearray(min(BLOCK_SIZE, size + 1))
    view = memoryview(buf)
    readinto = getattr(source, "readinto", None)
    got = 0
    while got <= size:
        want = min(len(buf), size + 1 - got)
        if readinto is not None:
            n = readinto(view[:want])
            chunk = view[:n] if n else b""
        else:
            chunk = source.read(want)
        if not chunk:
            break
        h.update(chunk)
        _write_all(fd, chunk)
        got += len(chunk)
    return got, h.hexdigest()


def _copy_file(src: int, fd: int, size: int, on_bytes: Callable[[int], None] | None) -> tuple[int, str]:
    """Copy the file ``src`` into ``fd`` in the kernel, then hash what landed in ``fd``.

    Falls back to a read/hash/write loop where ``copy_file_range`` is refused.
    Returns (bytes copied, sha256 of the copy).
    """
    copied = 0
    try:
        while copied <= size:
            n = os.copy_file_range(src, fd, min(MAP_CHUNK, size + 1 - copied))
            if n == 0:
                break
            copied += n
            if on_bytes is not None:
                on_bytes(n)
    except OSError as exc:
        if exc.errno not in _NO_COPY_RANGE:
            raise
        return _copy_fallback(src, fd, copied, size, on_bytes)
    return copied, _hash_fd(fd, copied)


def _copy_fallback(src: int, fd: int, copied: int, size: int,
                   on_bytes: Callable[[int], None] | None) -> tuple[int, str]:
    """Restart the copy in user space (copy_file_range refused after ``copied`` bytes)."""
    os.lseek(src, 0, os.SEEK_SET)
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    with os.fdopen(os.dup(src), "rb", buffering=0) as f:
        got, digest = _copy_stream(f, fd, size)
    if on_bytes is not None and got > copied:
        on_bytes(got - copied)
    return got, digest


def _hash_fd(fd: int, size: int) -> str:
    """SHA-256 of the first ``size`` bytes of ``fd`` through mappings (no copy into Python)."""
    h = hashlib.sha256()
    for off in range(0, size, MAP_CHUNK):
        n = min(MAP_CHUNK, size - off)
        with mmap.mmap(fd, n, prot=mmap.PROT_READ, offset=off) as mm:
            h.update(mm)
    return h.hexdigest()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
