"""Helpers for transfer tests: workspaces with packages built in-process, recording remotes."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gitquilt.manifest import Entry, Manifest
from gitquilt.ops.transfer_exec import RetryPolicy
from gitquilt.ops.workspace import Workspace
from gitquilt.remotes import Remote, fragment_key
from tests.conftest import Repo

#: Fast retries for tests (no real waiting).
FAST = RetryPolicy(attempts=4, base=0.001, cap=0.005)


def files(n: int, size: int = 700, tag: str = "") -> dict[str, bytes]:
    """``n`` files of distinct content."""
    return {f"d{i % 5}/f{i:05d}.bin": (f"{tag}{i}:".encode() * (size // 3 + 1))[: size + i % 17] for i in range(n)}


def add_package(repo: Repo, data: dict[str, bytes], pkg: str = "data") -> tuple[Workspace, str]:
    """Write ``data`` under ``pkg/`` and add it in-process; returns (workspace, top hash)."""
    from gitquilt.ops.add import add_package as add

    for rel, content in data.items():
        p = repo.root / pkg / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    ws = Workspace.open(repo.root)
    result = add(ws, ws.package_ref(str(repo.root / pkg)), stage=False)
    return ws, result.pointer.top_hash


def synthetic_package(ws: Workspace, n: int, tag: str = "s") -> tuple[str, dict[str, bytes]]:
    """A manifest of ``n`` small fragments written straight into the cache (fast, no work tree)."""
    blobs = {f"f{i:06d}": f"{tag}-{i}".encode() for i in range(n)}
    entries = []
    with ws.cache.batch() as batch:
        for key, data in blobs.items():
            entries.append(Entry(key, batch.put_bytes(data), len(data), False))
    top = ws.cache.put_manifest(Manifest.from_entries(entries, {}))
    return top, blobs


def upload_raw(remote: Remote, blobs: dict[str, bytes] | list[bytes]) -> None:
    """Put fragments straight onto a remote."""
    for data in blobs.values() if isinstance(blobs, dict) else blobs:
        d = hashlib.sha256(data).hexdigest()
        remote.put(fragment_key(d), io.BytesIO(data), len(data), d)
    remote.flush()


def cache_objects(ws: Workspace) -> set[str]:
    return set(ws.cache.iter_objects())


def tmp_leftovers(root: Path) -> list[str]:
    from gitquilt import fsutil

    out = []
    for dirpath, _d, names in os.walk(root):
        out += [os.path.join(dirpath, n) for n in names if fsutil.tmp_owner_pid(n) is not None]
    return out


class Recording:
    """Wraps a remote and records the order of successful puts."""

    def __init__(self, inner: Remote) -> None:
        self.inner = inner
        self.url = inner.url
        self.puts: list[str] = []
        self._lock = threading.Lock()

    def put(self, key: str, source: BinaryIO, size: int, sha256: str | None = None, overwrite: bool = False) -> bool:
        created = self.inner.put(key, source, size, sha256, overwrite)
        with self._lock:
            self.puts.append(key)
        return created

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[object]:
        return self.inner.list(prefix, start_after)  # type: ignore[return-value]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)
