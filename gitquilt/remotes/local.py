"""A directory remote: a plain directory (or a shared drive) with the cache's layout.

Fragments and manifests are written through :class:`gitquilt.store.Store`, so they are
hashed on the way, verified, made durable and linked into place: a key never holds
bytes that do not hash to it, and two clones writing the same fragment at once are
harmless (link-if-absent). Fragment puts are batched (one file-system sync per batch,
as in the cache); :meth:`flush` links the batch, and the transfer engine flushes before
it uploads any manifest, so a manifest never names a fragment that is not in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gitquilt import fsutil
from gitquilt.digest import HashingWriter, expect_digest
from gitquilt.errors import IntegrityError, QuiltError, RemotePermanent
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
        if exists:
            self.store.delete(digest)
        with self._lock:
            if self._batch is None:
                self._batch = self.store.batch()
            batch = self._batch
        batch.put_stream(source, digest, size, where=f"upload of {key}")
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
        tmp = self.store.tmp / fsutil.tmp_name("put")
        ok = False
        try:
            with open(tmp, "xb") as raw:
                w = HashingWriter(raw)  # type: ignore[arg-type]
                while w.size < size:
                    chunk = source.read(min(1 << 20, size - w.size))
                    if not chunk:
                        break
                    w.write(chunk)
                raw.flush()
                if self.store.fsync != "never":
                    os.fsync(raw.fileno())
            if w.size != size:
                raise IntegrityError(f"upload of {key}: expected {size} bytes, got {w.size}")
            if sha256 is not None:
                expect_digest(w.hexdigest(), sha256, w.size, f"upload of {key}")
            if overwrite:
                os.replace(tmp, final)
            else:
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    return False
            ok = True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if ok and self.store.fsync != "never":
            fsutil.fsync_dir(final.parent)
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
        if batch is None:
            return
        try:
            batch.commit()
        except StoreError as exc:
            raise self._fail(exc, "cannot store fragments") from None

    def list_uploads(self) -> list[PendingUpload]:
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
