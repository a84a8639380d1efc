"""Transfer execution: a thread pool that moves objects, retrying what is worth retrying.

Each object is one task: upload a cache file, or download into the cache through
:meth:`WriteBatch.put_stream` (hashed on the way; a mismatch stores nothing). A task
that fails with a transient error (throttling, 5xx, a dropped connection, a truncated
or corrupted body) is retried with exponential backoff and jitter; after the last
attempt it is recorded as failed and the others go on, so that a rerun has less to
do. A permanent error (no such bucket, access denied, disk full) stops the whole
transfer at once. Ctrl-C stops it through :func:`parallel_map`.

Large downloads from backends that serve byte ranges well are split into ranges
fetched in parallel, read back in order by :class:`RangedReader`, with the buffers
bounded by a :class:`ByteBudget`.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

from gitquilt.errors import IntegrityError, RemoteError
from gitquilt.ops.parallel import parallel_map
from gitquilt.ops.progress import Progress
from gitquilt.remotes import ObjectInfo, ObjectMissing, Remote, is_transient
from gitquilt.remotes.streams import ByteBudget

MiB = 1 << 20
#: Downloads at least this large are fetched as parallel byte ranges (where the backend allows).
RANGE_THRESHOLD = 32 * MiB
RANGE_PART = 16 * MiB
#: Ranges one download may have in flight (memory is bounded by the budget in any case).
RANGE_AHEAD = 8
DOWNLOAD_MEMORY = 128 * MiB
T = TypeVar("T")


def _env_number(name: str, default: float) -> float:
    """A positive number from the environment (``GITQUILT_RETRY_*``), else ``default``."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if 0 < value < 1e6 else default


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: ``base * 2**attempt`` capped at ``cap`` seconds.

    ``GITQUILT_RETRY_ATTEMPTS`` and ``GITQUILT_RETRY_BASE`` (seconds) change the defaults
    (the tests make failures fast with them).
    """

    attempts: int = field(default_factory=lambda: int(_env_number("GITQUILT_RETRY_ATTEMPTS", 4)))
    base: float = field(default_factory=lambda: _env_number("GITQUILT_RETRY_BASE", 0.25))
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * (2.0**attempt)) * random.uniform(0.5, 1.0)


class TransferFailed(RemoteError):
    """Some objects could not be transferred after retries (the others were)."""

    def __init__(self, message: str, failures: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.failures = failures


class DamagedOnRemote(TransferFailed, IntegrityError):
    """Every object that failed arrived with wrong bytes each time (a damaged copy on the
    remote, not the network): nothing of it was stored. Both a TransferFailed and an IntegrityError."""


def retryable(exc: BaseException) -> bool:
    """Transient network failures, and bodies that arrived damaged (a retry may get them right)."""
    return is_transient(exc) or isinstance(exc, IntegrityError)


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()``, retried with backoff on transient failures (single requests: HEAD, DELETE)."""
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or attempt + 1 >= policy.attempts:
                raise
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable")


def list_with_retries(remote: Remote, prefix: str, policy: RetryPolicy, start_after: str | None = None,
                      limit: int | None = None, sleep: Callable[[float], None] = time.sleep) -> list[ObjectInfo]:
    """A listing that survives transient failures, resuming after the last key it saw."""
    out: list[ObjectInfo] = []
    after = start_after
    attempt = 0
    while True:
        try:
            for info in remote.list(prefix, after):
                out.append(info)
                after = info.key
                if limit is not None and len(out) >= limit:
                    return out
            return out
        except Exception as exc:
            if not is_transient(exc) or attempt + 1 >= policy.attempts:
                raise
            sleep(policy.delay(attempt))
            attempt += 1


@dataclass
class Tally:
    """What the executor moved."""

    files: int = 0
    bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    retries: int = 0
    damaged: set[str] = field(default_factory=set)  # failed keys whose last attempt got wrong bytes


Task = Callable[[str, int, Callable[[int], None]], None]


class Executor:
    """Runs one task per object on ``jobs`` threads, with retries and progress."""

    def __init__(self, jobs: int, progress: Progress, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.jobs = max(1, jobs)
        self.progress = progress
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self._lock = threading.Lock()

    def run(self, items: list[tuple[str, int]], task: Task, key_of: Callable[[str], str], tally: Tally) -> None:
        """Run ``task(id, size, on_bytes)`` for each ``(id, size)``; record failures in ``tally``."""
        file_done = getattr(self.progress, "file_done", None)

        def work(item: tuple[str, int]) -> None:
            ident, size = item
            for attempt in range(self.policy.attempts):
                moved = [0]

                def on_bytes(n: int, moved: list[int] = moved) -> None:
                    moved[0] += n
                    self.progress.update(n)

                try:
                    task(ident, size, on_bytes)
                except ObjectMissing as exc:
                    self._fail(tally, key_of(ident), str(exc), moved[0])
                    return
                except Exception as exc:
                    if not retryable(exc):
                        self.progress.update(-moved[0])
                        raise
                    self.progress.update(-moved[0])
                    if attempt + 1 >= self.policy.attempts:
                        self._fail(tally, key_of(ident), str(exc), 0)
                        if isinstance(exc, IntegrityError):
                            with self._lock:
                                tally.damaged.add(key_of(ident))
                        return
                    with self._lock:
                        tally.retries += 1
                    self.sleep(self.policy.delay(attempt))
                    continue
                with self._lock:
                    tally.files += 1
                    tally.bytes += moved[0] if moved[0] else max(size, 0)
                if file_done is not None:
                    file_done()
                return

        with contextlib.closing(parallel_map(work, items, min(self.jobs, max(1, len(items))))) as done:
            for _ in done:
                pass

    def _fail(self, tally: Tally, key: str, message: str, moved: int) -> None:
        if moved:
            self.progress.update(-moved)
        with self._lock:
            tally.failures.append((key, message))


def raise_failures(tally: Tally, what: str, where: str) -> None:
    """One line for the objects that failed (the first reason shown; all listed on the error)."""
    if not tally.failures:
        return
    tally.failures.sort()
    key, reason = tally.failures[0]
    first = reason if key in reason else f"{key}: {reason}"
    damaged = all(k in tally.damaged for k, _ in tally.failures)
    raise (DamagedOnRemote if damaged else TransferFailed)(
        f"{len(tally.failures)} object(s) could not be {what} {where} after retries "
        f"(rerun to finish; what arrived is not sent again). First: {first}",
        tally.failures,
    )

class RangedReader(io.RawIOBase):
    """Reads one large object as byte ranges fetched in parallel, in order.

    A reader only blocks waiting for budget while it holds no buffer, so readers
    sharing one budget cannot deadlock each other.
    """

    def __init__(self, remote: Remote, key: str, size: int, pool: ThreadPoolExecutor, budget: ByteBudget,
                 part: int | None = None, ahead: int | None = None) -> None:
        part = part or RANGE_PART
        ahead = ahead or RANGE_AHEAD
        self._remote = remote
        self._key = key
        self._parts = [(off, min(part, size - off)) for off in range(0, size, part)]
        self._next = 0
        self._pool = pool
        self._budget = budget
        self._ahead = ahead
        self._window: deque[tuple[Future[bytes], int]] = deque()
        self._buf = memoryview(b"")
        self._held = 0  # budget of the buffer being read
        self._fill()

    def _fetch(self, start: int, length: int) -> bytes:
        with contextlib.closing(self._remote.get(self._key, start, length)) as body:
            chunks = []
            got = 0
            while got < length:
                chunk = body.read(min(4 * MiB, length - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        data = b"".join(chunks)
        if len(data) != length:
            raise IntegrityError(f"{self._key}: range at {start} returned {len(data)} bytes, expected {length}")
        return data

    def _fill(self) -> None:
        while self._next < len(self._parts) and len(self._window) < self._ahead:
            off, n = self._parts[self._next]
            holding = bool(self._window) or self._held
            if holding:
                if not self._try_acquire(n):
                    return
                taken = min(n, self._budget.capacity)
            else:
                taken = self._budget.acquire(n)
            self._window.append((self._pool.submit(self._fetch, off, n), taken))
            self._next += 1

    def _try_acquire(self, n: int) -> bool:
        b = self._budget
        n = min(n, b.capacity)
        with b._cond:
            if b._free < n:
                return False
            b._free -= n
            b.peak = max(b.peak, b.capacity - b._free)
        return True

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._buf:
            if self._held:
                self._budget.release(self._held)
                self._held = 0
            self._fill()
            if not self._window:
                return b""
            future, taken = self._window.popleft()
            try:
                self._buf = memoryview(future.result())
            except BaseException:
                self._budget.release(taken)
                raise
            self._held = taken
            self._fill()
        n = len(self._buf) if size is None or size < 0 else min(size, len(self._buf))
        out = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        return out

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        memoryview(b)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            for future, taken in self._window:
                future.cancel()
                with contextlib.suppress(BaseException):
                    future.result()
                self._budget.release(taken)
            self._window.clear()
            if self._held:
                self._budget.release(self._held)
                self._held = 0
            self._buf = memoryview(b"")
        super().close()


class ChunkReader:
    """A download stream read through one reused buffer, reporting progress.

    ``read`` returns a *view* of the buffer, valid until the next call: for consumers
    that use each chunk before asking for the next (``WriteBatch.put_stream`` hashes and
    writes it at once). No fresh megabyte per chunk: allocating and freeing one per read
    costs more in page faults and unmapping than the copy itself (4 × 256 MiB from a
    directory remote: 1.7 s of system time against 0.3 s). A failing read becomes
    :class:`RemoteTransient` naming ``label``, as with :class:`CountingReader`.
    """

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None], label: str, size: int = 1 << 20) -> None:
        self._raw = raw
        self._on_bytes = on_bytes
        self._label = label
        self._view = memoryview(bytearray(size))

    def read(self, size: int = -1) -> memoryview | bytes:
        view = self._view if size is None or size < 0 or size >= len(self._view) else self._view[:size]
        try:
            readinto = getattr(self._raw, "readinto", None)
            if readinto is None:
                data = self._raw.read(len(view))
                view[: len(data)] = data
                n = len(data)
            else:
                n = readinto(view)
        except OSError as exc:
            from gitquilt.errors import RemoteTransient

            raise RemoteTransient(f"{self._label}: connection lost ({exc})") from None
        if not n:
            return b""
        self._on_bytes(n)
        return view[:n]

    def close(self) -> None:
        self._raw.close()


def open_download(remote: Remote, key: str, size: int | None, pool: ThreadPoolExecutor | None,
                  budget: ByteBudget | None) -> BinaryIO:
    """A stream of the object: parallel ranges for large objects where the backend likes them."""
    if (
        size is not None and size >= RANGE_THRESHOLD and pool is not None and budget is not None
        and remote.capabilities().parallel_ranges
    ):
        return RangedReader(remote, key, size, pool, budget)  # type: ignore[return-value]
    return remote.get(key)

