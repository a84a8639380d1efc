"""An in-memory remote: for unit tests of the transfer engine (``memory://name``)."""

from __future__ import annotations

import bisect
import io
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

from gitquilt.remotes import Capabilities, ObjectInfo, ObjectMissing, PendingUpload, RequestCounter, check_key
from gitquilt.remotes.streams import check_bytes, read_exactly

#: Keys per listing page, like S3.
PAGE = 1000

_NAMED: dict[str, MemoryRemote] = {}
_NAMED_LOCK = threading.Lock()


def named(name: str) -> MemoryRemote:
    """The process-wide memory remote called ``name`` (created on first use)."""
    with _NAMED_LOCK:
        remote = _NAMED.get(name)
        if remote is None:
            remote = _NAMED[name] = MemoryRemote(f"memory://{name}")
        return remote


class MemoryRemote:
    """Objects in a dict; thread-safe; counts one request per call and per listing page."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.objects: dict[str, bytes] = {}
        self.mtimes: dict[str, float] = {}
        self._sorted: list[str] | None = []  # sorted keys, rebuilt lazily after changes
        self._lock = threading.Lock()
        self.requests = RequestCounter()
        self.caps = Capabilities(conditional_put=True, server_checksum=True, parallel_ranges=True, multipart=False)

    def capabilities(self) -> Capabilities:
        return self.caps

    def probe(self) -> Capabilities:
        return self.caps

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self.objects)
            keys = self._sorted
        i = bisect.bisect_left(keys, prefix)
        if start_after is not None:
            i = max(i, bisect.bisect_right(keys, start_after))
        self.requests.add("list")
        for n, key in enumerate(keys[i:]):
            if not key.startswith(prefix):
                break
            if n and n % PAGE == 0:
                self.requests.add("list")
            with self._lock:
                data = self.objects.get(key)
                mtime = self.mtimes.get(key)
            if data is not None:
                yield ObjectInfo(key, len(data), mtime)

    def get(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        self.requests.add("get")
        with self._lock:
            data = self.objects.get(key)
        if data is None:
            raise ObjectMissing(f"{key} is not on {self.url}")
        end = len(data) if length is None else min(len(data), start + length)
        return io.BytesIO(data[start:end])

    def put(self, key: str, source: BinaryIO, size: int, sha256: str | None = None, overwrite: bool = False) -> bool:
        check_key(key)
        self.requests.add("put")
        data = read_exactly(source, size, f"upload of {key}")
        check_bytes(data, sha256, f"upload of {key}")
        with self._lock:
            if key in self.objects and not overwrite:
                return False
            if key not in self.objects:
                self._sorted = None
            self.objects[key] = data
            self.mtimes[key] = time.time()
        return True

    def size(self, key: str) -> int | None:
        self.requests.add("head")
        with self._lock:
            data = self.objects.get(key)
        return None if data is None else len(data)

    def delete(self, key: str) -> None:
        self.requests.add("delete")
        with self._lock:
            if self.objects.pop(key, None) is not None:
                self._sorted = None
                self.mtimes.pop(key, None)

    def flush(self) -> None:
        pass

    def list_uploads(self) -> list[PendingUpload]:
        return []

    def abort_upload(self, upload: PendingUpload) -> None:
        pass

    def request_count(self) -> int:
        return self.requests.total()

    def close(self) -> None:
        pass
