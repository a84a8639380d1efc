"""``git quilt verify``: re-hash every fragment and re-validate every manifest in a store.

Nothing is trusted: not the stat cache, not sizes, not earlier runs. A fragment whose
bytes do not hash to its name, or that is not a regular file, and a manifest that fails
validation are moved to ``quarantine/`` so that no later command reads them; the report
lists them. The functions take a :class:`Store`, so a directory remote can be checked
the same way; checks that need a remote's own API live in a separate module.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gitquilt.digest import BLOCK_SIZE
from gitquilt.errors import NotFound, QuiltError, UnsupportedFormat
from gitquilt.ops.parallel import parallel_map
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.store import Store

#: hashlib releases the GIL on large reads; small files overlap their system calls.
HASH_THREADS = max(4, min(32, 2 * (os.cpu_count() or 2)))

FRAGMENT = "fragment"
MANIFEST = "manifest"


@dataclass(frozen=True)
class Damage:
    """One damaged object: what it is, why, and where it was moved (None: left in place)."""

    kind: str
    key: str
    reason: str
    quarantined: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class VerifyReport:
    """What a verification looked at and what it found."""

    where: str
    fragments: int = 0
    manifests: int = 0
    bytes: int = 0
    damaged: list[Damage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # readable only by a newer gitquilt

    @property
    def ok(self) -> bool:
        return not self.damaged

    def to_json(self) -> dict[str, Any]:
        return {
            "where": self.where, "fragments": self.fragments, "manifests": self.manifests, "bytes": self.bytes,
            "ok": self.ok, "damaged": [d.to_json() for d in self.damaged], "skipped": self.skipped,
        }


def check_fragment(store: Store, digest: str) -> tuple[int, str | None]:
    """Hash one stored fragment: (bytes read, None if intact else why it is damaged).

    Raises FileNotFoundError when the fragment vanished (a concurrent gc), and
    OSError when it cannot be read (a permission problem is not damage to move).
    """
    try:  # O_NONBLOCK: a FIFO planted in the store must not hang the check
        fd = os.open(store.object_path(digest), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return 0, "not a regular file"
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return 0, "not a regular file"
        h = hashlib.sha256()
        size = 0
        buf = _buffer()
        while n := os.readv(fd, [buf]):
            h.update(buf[:n])
            size += n
    finally:
        os.close(fd)
    actual = h.hexdigest()
    if actual != digest:
        return size, f"content hashes to {actual}"
    return size, None


_local = threading.local()


def _buffer() -> memoryview:
    """A read buffer per thread, reused across files (most fragments are small)."""
    buf: memoryview | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = memoryview(bytearray(BLOCK_SIZE))
    return buf


def check_manifest(store: Store, top_hash: str) -> str | None:
    """Re-read and validate one stored manifest: None if intact, else why it is damaged.

    Raises :class:`UnsupportedFormat` for a manifest that a newer gitquilt wrote (not
    damage) and :class:`NotFound` when it vanished meanwhile.
    """
    path = store.manifest_path(top_hash)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise NotFound(f"manifest {top_hash} vanished") from None
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    try:
        store.read_manifest(top_hash, parquet_only=True)
    except UnsupportedFormat:
        raise
    except NotFound:
        raise
    except QuiltError as exc:
        return str(exc)
    store.check_manifest_text(top_hash)
    return None


def verify_fragments(
    store: Store, report: VerifyReport, progress: Progress, jobs: int | None = None,
    digests: Iterable[str] | None = None, quarantine: bool = True,
) -> None:
    """Re-hash ``digests`` (default: every fragment in ``store``) in a thread pool."""
    todo = list(store.iter_objects() if digests is None else digests)
    total = 0
    for d in todo:
        try:
            total += os.lstat(store.object_path(d)).st_size
        except OSError:
            pass
    progress.start(total, "B", "verifying fragments")

    def work(digest: str) -> tuple[str, int, str | None, bool]:
        try:
            size, reason = check_fragment(store, digest)
        except FileNotFoundError:
            return digest, 0, None, False
        except OSError as exc:
            return digest, 0, f"cannot read: {exc.strerror or exc}", True
        progress.update(size)
        return digest, size, reason, True

    try:
        _run(work, todo, jobs, lambda r: _take_fragment(store, report, r, quarantine, progress))
    finally:
        progress.close()


def _take_fragment(
    store: Store, report: VerifyReport, r: tuple[str, int, str | None, bool], quarantine: bool, progress: Progress
) -> None:
    digest, size, reason, present = r
    if not present:
        return
    report.fragments += 1
    report.bytes += size
    if reason is None:
        return
    moved = None
    if quarantine and not reason.startswith("cannot read"):
        moved = _move(lambda: store.quarantine(digest), progress, digest)
    report.damaged.append(Damage(FRAGMENT, digest, reason, moved))


def verify_manifests(
    store: Store, report: VerifyReport, progress: Progress, jobs: int | None = None, quarantine: bool = True
) -> None:
    """Re-read and validate every manifest in ``store``."""
    todo = sorted(store.iter_manifests())
    progress.start(len(todo), "manifests", "verifying manifests")

    def work(top: str) -> tuple[str, str | None, str]:
        try:
            reason = check_manifest(store, top)
        except UnsupportedFormat as exc:
            return top, None, f"skipped: {exc}"
        except NotFound:
            return top, None, "gone"
        except OSError as exc:
            reason = f"cannot read: {exc.strerror or exc}"
        finally:
            progress.update(1)
        return top, reason, ""

    def take(r: tuple[str, str | None, str]) -> None:
        top, reason, note = r
        if note == "gone":
            return
        report.manifests += 1
        if note:
            report.skipped.append(top)
            progress.warn(note)
            return
        if reason is None:
            return
        moved = None
        if quarantine and not reason.startswith("cannot read"):
            moved = _move(lambda: store.quarantine_manifest(top), progress, top)
        report.damaged.append(Damage(MANIFEST, top, reason, moved))

    try:
        _run(work, todo, jobs, take)
    finally:
        progress.close()


def _run(work: Callable[[str], Any], todo: list[str], jobs: int | None, take: Callable[[Any], None]) -> None:
    threads = min(jobs or HASH_THREADS, HASH_THREADS, max(1, len(todo)))
    if threads <= 1:
        for item in todo:
            take(work(item))
        return
    with contextlib.closing(parallel_map(work, todo, threads)) as done:  # Ctrl-C drops the queue
        for r in done:
            take(r)


def _move(fn: Callable[[], Any], progress: Progress, key: str) -> str | None:
    try:
        return str(fn())
    except FileNotFoundError:
        return None
    except OSError as exc:
        progress.warn(f"could not move {key} to quarantine: {exc.strerror or exc}")
        return None


def verify_store(store: Store, progress: Progress | None = None, jobs: int | None = None) -> VerifyReport:
    """Check every fragment and manifest of ``store`` (the cache, or a directory remote)."""
    progress = progress or NullProgress()
    report = VerifyReport(str(store.root))
    verify_fragments(store, report, progress, jobs)
    verify_manifests(store, report, progress, jobs)
    report.damaged.sort(key=lambda d: (d.kind, d.key))
    return report
