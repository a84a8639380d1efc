"""FaultyRemote: wraps a remote and injects failures at chosen calls (tests only).

Faults model what networks and servers do (RELIABILITY.md §18–20, §30, §40): a
throttled or failed request, a connection dropped after some bytes, a body with a
flipped bit or cut short, a listing that names objects that were never requested.
"""

from __future__ import annotations

import io
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from gitquilt.errors import RemotePermanent, RemoteTransient
from gitquilt.remotes import Capabilities, ObjectInfo, PendingUpload, Remote

ACTIONS = ("transient", "permanent", "connection", "corrupt", "truncate")


@dataclass
class Fault:
    """One rule. ``at``: the Nth call (1-based) of ``op`` fails, ``times`` calls in a row;
    or ``rate``: each call fails with that probability (seeded, reproducible)."""

    op: str  # get, put, list, size, delete
    action: str  # one of ACTIONS
    at: int | None = None
    times: int = 1
    rate: float = 0.0
    after_bytes: int = 0  # connection/truncate/corrupt: bytes that pass first (items, for list)
    key_contains: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")


class FaultyRemote:
    """A :class:`Remote` that passes calls through, failing the ones its rules pick."""

    def __init__(
        self, inner: Remote, faults: list[Fault] | None = None, seed: int = 0,
        extra_listing: list[ObjectInfo] | None = None, capabilities: Capabilities | None = None,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.faults = list(faults or [])
        self.extra_listing = sorted(extra_listing or [])
        self._caps = capabilities
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()

    def _pick(self, op: str, key: str) -> Fault | None:
        with self._lock:
            self.calls[op] += 1
            n = self.calls[op]
            for f in self.faults:
                if f.op != op or (f.key_contains is not None and f.key_contains not in key):
                    continue
                hit = (f.at is not None and f.at <= n < f.at + f.times) or (f.rate and self._rng.random() < f.rate)
                if hit:
                    self.injected[f.action] += 1
                    return f
        return None

    @staticmethod
    def _raise(f: Fault, op: str, key: str) -> None:
        if f.action == "permanent":
            raise RemotePermanent(f"injected permanent failure: {op} {key}")
        if f.action == "connection":
            raise ConnectionError(f"injected dropped connection: {op} {key}")
        raise RemoteTransient(f"injected 503 SlowDown: {op} {key}")

    def capabilities(self) -> Capabilities:
        return self._caps or self.inner.capabilities()

    def probe(self) -> Capabilities:
        return self._caps or self.inner.probe()

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        f = self._pick("list", prefix)
        if f is not None and f.action in ("transient", "permanent"):
            self._raise(f, "list", prefix)
        extra = [o for o in self.extra_listing if o.key.startswith(prefix) and (start_after is None or o.key > start_after)]
        merged = sorted([*self.inner.list(prefix, start_after), *extra])
        for i, info in enumerate(merged):
            if f is not None and f.action == "connection" and i == f.after_bytes:
                raise ConnectionError(f"injected dropped connection while listing {prefix}")
            yield info

    def get(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        f = self._pick("get", key)
        if f is not None and f.action in ("transient", "permanent"):
            self._raise(f, "get", key)
        stream = self.inner.get(key, start, length)
        if f is None:
            return stream
        return _FaultyStream(stream, f)  # type: ignore[return-value]

    def put(self, key: str, source: BinaryIO, size: int, sha256: str | None = None, overwrite: bool = False) -> bool:
        f = self._pick("put", key)
        if f is not None:
            if f.action in ("transient", "permanent"):
                self._raise(f, "put", key)
            source = _FaultyStream(source, f)  # type: ignore[assignment]
        return self.inner.put(key, source, size, sha256, overwrite)

    def size(self, key: str) -> int | None:
        f = self._pick("size", key)
        if f is not None:
            self._raise(f, "size", key)
        return self.inner.size(key)

    def delete(self, key: str) -> None:
        f = self._pick("delete", key)
        if f is not None:
            self._raise(f, "delete", key)
        self.inner.delete(key)

    def flush(self) -> None:
        self.inner.flush()

    def list_uploads(self) -> list[PendingUpload]:
        return self.inner.list_uploads()

    def abort_upload(self, upload: PendingUpload) -> None:
        self.inner.abort_upload(upload)

    def request_count(self) -> int:
        return self.inner.request_count()

    def close(self) -> None:
        self.inner.close()


class _FaultyStream(io.RawIOBase):
    """A body that drops, corrupts or ends early after ``after_bytes``."""

    def __init__(self, raw: BinaryIO, fault: Fault) -> None:
        self._raw = raw
        self._f = fault
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        f = self._f
        if f.action in ("connection", "truncate") and self._pos >= f.after_bytes:
            if f.action == "connection":
                raise ConnectionError("injected dropped connection in the middle of a body")
            return b""
        if f.action in ("connection", "truncate"):
            limit = f.after_bytes - self._pos
            size = limit if size is None or size < 0 else min(size, limit)
        data = self._raw.read(size)
        if f.action == "corrupt" and data and self._pos <= f.after_bytes < self._pos + len(data):
            i = f.after_bytes - self._pos
            data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
        self._pos += len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        memoryview(b)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()
