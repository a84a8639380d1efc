"""Small stream helpers shared by the backends and the transfer engine."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from typing import BinaryIO

from gitquilt.digest import BLOCK_SIZE, expect_digest


class ByteBudget:
    """A counting semaphore over bytes: bounds the memory held by in-flight buffers.

    A request larger than the whole budget is clamped to it, so a single huge
    buffer can still proceed alone instead of waiting forever.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._free = self.capacity
        self._cond = threading.Condition()
        self.peak = 0

    def acquire(self, n: int) -> int:
        """Block until ``n`` bytes (clamped to the capacity) are free; return what was taken."""
        n = min(max(0, n), self.capacity)
        with self._cond:
            while self._free < n:
                self._cond.wait()
            self._free -= n
            self.peak = max(self.peak, self.capacity - self._free)
        return n

    def release(self, n: int) -> None:
        with self._cond:
            self._free += n
            self._cond.notify_all()


def read_exactly(source: BinaryIO, size: int, what: str) -> bytes:
    """Read ``size`` bytes; a short source is an error (the file changed under us)."""
    chunks = []
    got = 0
    while got < size:
        chunk = source.read(min(BLOCK_SIZE * 8, size - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    data = b"".join(chunks)
    if len(data) != size:
        from gitquilt.errors import IntegrityError

        raise IntegrityError(f"{what}: expected {size} bytes, got {len(data)}")
    return data


def check_bytes(data: bytes | memoryview, sha256: str | None, what: str) -> None:
    """Raise IntegrityError when ``data`` does not hash to ``sha256`` (if given)."""
    if sha256 is not None:
        expect_digest(hashlib.sha256(data).hexdigest(), sha256, len(data), what)


class LimitedReader(io.RawIOBase):
    """Reads at most ``limit`` bytes of an underlying stream, then reports end of file."""

    def __init__(self, raw: BinaryIO, limit: int | None, on_close: Callable[[], None] | None = None) -> None:
        self._raw = raw
        self._left = limit
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(b)
        want = len(view) if self._left is None else min(len(view), self._left)
        if want <= 0:
            return 0
        data = self._raw.read(want)
        n = len(data)
        view[:n] = data
        if self._left is not None:
            self._left -= n
        return n

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if size is None or size < 0:
            if self._left is None:
                return self._raw.read()
            size = self._left
        want = size if self._left is None else min(size, self._left)
        if want <= 0:
            return b""
        data = self._raw.read(want)
        if self._left is not None:
            self._left -= len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            finally:
                if self._on_close is not None:
                    self._on_close()
        super().close()


class CountingReader(io.RawIOBase):
    """Passes reads through and reports each chunk's size (progress while a backend reads).

    With ``network`` (a label), the stream is a download: a dropped connection while
    reading becomes :class:`RemoteTransient` — a ``ConnectionError`` is an ``OSError``,
    which the store would otherwise report as its own (disk) failure.
    """

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None], network: str | None = None) -> None:
        self._raw = raw
        self._on_bytes = on_bytes
        self._network = network
        self._pos = 0
        self._high = 0  # progress counts each byte once, even when a backend re-reads after a seek

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if self._network is None:
            data = self._raw.read(size)
        else:
            try:
                data = self._raw.read(size)
            except OSError as exc:
                from gitquilt.errors import RemoteTransient

                raise RemoteTransient(f"{self._network}: connection lost ({exc})") from None
        if data:
            self._pos += len(data)
            if self._pos > self._high:
                self._on_bytes(self._pos - self._high)
                self._high = self._pos
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        memoryview(b)[: len(data)] = data
        return len(data)

    def seekable(self) -> bool:
        try:
            return bool(self._raw.seekable())
        except (AttributeError, ValueError, OSError):
            return False

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = self._raw.seek(offset, whence)
        return self._pos
