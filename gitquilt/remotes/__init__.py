"""Remotes: one narrow protocol every storage backend implements, and a registry by URL.

A remote has the same layout as the cache (DESIGN.md): ``objects/sha256/<2>/<62>``
and ``manifests/<top hash>.parquet`` (packs come later, issue 4). The protocol is
deliberately small, restic-style, so that wrappers (fault injection, retries) and one
conformance suite (tests/remotes/conformance.py) cover every backend:

* ``list(prefix)`` yields :class:`ObjectInfo` sorted by key, paginated inside;
* ``get(key, start, length)`` streams an object or a byte range of it;
* ``put(key, source, size, sha256)`` stores an object atomically: a key never holds
  partial bytes, and when ``sha256`` is given, never bytes that do not hash to it;
* ``size`` (one HEAD), ``delete``, ``flush`` (make earlier puts durable and visible).

Backends are imported lazily: ``s3://`` loads boto3 only when such a remote is opened.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol, runtime_checkable

from gitquilt.config import check_no_control
from gitquilt.digest import is_digest
from gitquilt.errors import ConfigError, NotFound, RemoteError, RemotePermanent, RemoteTransient

if TYPE_CHECKING:
    from gitquilt.config import RemoteConfig

__all__ = [
    "Capabilities",
    "ObjectInfo",
    "ObjectMissing",
    "PendingUpload",
    "Remote",
    "RemoteError",
    "RemotePermanent",
    "RemoteTransient",
    "RequestCounter",
    "fragment_key",
    "manifest_key",
    "open_remote",
    "parse_key",
    "parse_url",
]

OBJECTS_PREFIX = "objects/sha256/"
MANIFESTS_PREFIX = "manifests/"
MANIFEST_SUFFIX = ".parquet"
#: Where clones leave a marker saying they use this remote (gc --remote reads them).
REPOS_PREFIX = "repos/"


class ObjectMissing(NotFound):
    """The key does not exist on the remote."""


class ObjectInfo(NamedTuple):
    """One listed object."""

    key: str
    size: int
    mtime: float | None = None  # seconds since the epoch (last modified), when known


class PendingUpload(NamedTuple):
    """An unfinished multipart upload (left by a killed push)."""

    key: str
    upload_id: str
    started: float | None


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the transfer engine adapts to it."""

    #: ``put`` of an existing key is refused atomically (S3 ``If-None-Match: *``, link-if-absent).
    conditional_put: bool = True
    #: The backend itself rejects an upload whose bytes do not match the SHA-256 sent with it.
    server_checksum: bool = True
    #: Ranged GETs are worth issuing in parallel for one large object.
    parallel_ranges: bool = False
    #: Unfinished uploads can exist and be listed/aborted (``list_uploads``).
    multipart: bool = False
    #: ``get(key)`` returns a seekable file: many ranges are read through one open (a directory).
    seekable_get: bool = False


@runtime_checkable
class Remote(Protocol):
    """A storage backend with the cache's layout."""

    #: Human-readable location, never containing credentials.
    url: str

    def capabilities(self) -> Capabilities:
        """What this backend supports, without writing anything (may be conservative)."""
        ...

    def probe(self) -> Capabilities:
        """Find out what the endpoint honours (S3: a few writes under ``gitquilt-probe/``)."""
        ...

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (after ``start_after``), sorted by key."""
        ...

    def get(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        """A stream of the object's bytes (or of ``length`` bytes from ``start``); close it.

        Raises :class:`ObjectMissing` when the key does not exist.
        """
        ...

    def put(self, key: str, source: BinaryIO, size: int, sha256: str | None = None, overwrite: bool = False) -> bool:
        """Store ``size`` bytes read from ``source`` under ``key``; False if it already existed.

        The object appears whole or not at all. With ``sha256``, bytes that do not hash
        to it are refused (IntegrityError) and nothing is stored.
        """
        ...

    def size(self, key: str) -> int | None:
        """The object's size, or None when absent (one request)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (absent is fine)."""
        ...

    def flush(self) -> None:
        """Make every completed ``put`` durable and visible (before dependent objects go up)."""
        ...

    def list_uploads(self) -> list[PendingUpload]:
        """Unfinished multipart uploads (empty where the backend has none)."""
        ...

    def abort_upload(self, upload: PendingUpload) -> None:
        """Abort one unfinished upload."""
        ...

    def request_count(self) -> int:
        """Requests made so far (HTTP requests for S3, operations otherwise)."""
        ...

    def close(self) -> None:
        """Release resources; unflushed puts may be dropped."""
        ...


class RequestCounter:
    """Thread-safe counts of requests by operation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_op: Counter[str] = Counter()

    def add(self, op: str, n: int = 1) -> None:
        with self._lock:
            self.by_op[op] += n

    def total(self) -> int:
        with self._lock:
            return sum(self.by_op.values())


# -- keys -------------------------------------------------------------------------------
def fragment_key(digest: str) -> str:
    """Remote key of a fragment."""
    return f"{OBJECTS_PREFIX}{digest[:2]}/{digest[2:]}"


def manifest_key(top_hash: str) -> str:
    """Remote key of a manifest."""
    return f"{MANIFESTS_PREFIX}{top_hash}{MANIFEST_SUFFIX}"


def parse_key(key: str) -> tuple[str, str] | None:
    """``("fragment", digest)`` or ``("manifest", top hash)`` for a well-formed key, else None."""
    if key.startswith(OBJECTS_PREFIX):
        rest = key[len(OBJECTS_PREFIX):]
        if len(rest) == 65 and rest[2] == "/" and is_digest(rest[:2] + rest[3:]):
            return "fragment", rest[:2] + rest[3:]
        return None
    if key.startswith(MANIFESTS_PREFIX) and key.endswith(MANIFEST_SUFFIX):
        top = key[len(MANIFESTS_PREFIX): -len(MANIFEST_SUFFIX)]
        if is_digest(top):
            return "manifest", top
    return None


_SAFE_KEY = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def check_key(key: str) -> str:
    """Refuse keys that are not plain relative paths (no ``..``, no empty segment)."""
    if not _SAFE_KEY.fullmatch(key) or any(seg in (".", "..") for seg in key.split("/")):
        raise RemoteError(f"refusing unsafe remote key {key[:100]!r}")
    return key


# -- URLs and the registry ----------------------------------------------------------------
@dataclass(frozen=True)
class ParsedUrl:
    """A remote URL split into its scheme and location."""

    scheme: str  # "s3", "file" or "memory"
    bucket: str = ""
    prefix: str = ""
    path: Path | None = None
    name: str = ""  # memory remotes


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def parse_url(url: str, base_dir: Path | None = None) -> ParsedUrl:
    """Validate a remote URL: ``s3://bucket/prefix``, ``file:///path``, a plain path, ``memory://name``.

    CR, LF, NUL and other control characters are refused before anything else happens
    (RELIABILITY.md §54); so is a ``..`` segment in an S3 prefix (§55).
    """
    check_no_control(url, "remote URL")
    if not url:
        raise ConfigError("remote URL is empty")
    if url.startswith("s3://"):
        rest = url[5:]
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ConfigError(f"invalid S3 bucket name {bucket!r} in {url!r}")
        prefix = prefix.strip("/")
        if prefix:
            segments = prefix.split("/")
            if any(s in ("", ".", "..") for s in segments):
                raise ConfigError(f"S3 prefix {prefix!r} in {url!r} has an empty, '.' or '..' segment")
        return ParsedUrl("s3", bucket=bucket, prefix=prefix)
    if url.startswith("memory://"):
        return ParsedUrl("memory", name=url[9:])
    if url.startswith("file://"):
        rest = url[7:]
        if not rest.startswith("/"):
            raise ConfigError(f"file URL {url!r} must be absolute (file:///path)")
        return ParsedUrl("file", path=Path(rest))
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise ConfigError(f"unsupported remote URL {url!r}: use s3://bucket/prefix, file:///path or a directory path")
    path = Path(url).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return ParsedUrl("file", path=path)


def check_endpoint(endpoint: str | None) -> str | None:
    """An S3 endpoint must be an http(s) URL without control characters."""
    if endpoint is None:
        return None
    check_no_control(endpoint, "endpoint URL")
    if not re.fullmatch(r"https?://[A-Za-z0-9._~\[\]:%-]+(:\d+)?(/[^\s]*)?", endpoint):
        raise ConfigError(f"endpoint URL {endpoint!r} must look like https://host[:port]")
    return endpoint


Factory = Callable[["RemoteConfig", ParsedUrl, int], Remote]
_FACTORIES: dict[str, Factory] = {}


def register_scheme(scheme: str, factory: Factory) -> None:
    """Plug in a backend for ``scheme://`` URLs."""
    _FACTORIES[scheme] = factory


def _open_s3(cfg: RemoteConfig, parsed: ParsedUrl, jobs: int) -> Remote:
    from gitquilt.remotes.s3 import S3Remote

    return S3Remote(parsed.bucket, parsed.prefix, cfg, jobs=jobs)


def _open_file(cfg: RemoteConfig, parsed: ParsedUrl, jobs: int) -> Remote:
    from gitquilt.remotes.local import DirectoryRemote

    if cfg.endpoint_url:
        raise ConfigError(f"remote {cfg.name!r}: endpoint_url only applies to s3:// remotes")
    assert parsed.path is not None
    return DirectoryRemote(parsed.path)


def _open_memory(cfg: RemoteConfig, parsed: ParsedUrl, jobs: int) -> Remote:
    from gitquilt.remotes.memory import named

    return named(parsed.name)


register_scheme("s3", _open_s3)
register_scheme("file", _open_file)
register_scheme("memory", _open_memory)


def open_remote(cfg: RemoteConfig, jobs: int = 32, base_dir: Path | None = None) -> Remote:
    """Open the backend a remote's configuration names (no request is made yet)."""
    parsed = parse_url(cfg.url, base_dir)
    check_endpoint(cfg.endpoint_url)
    if cfg.region is not None:
        check_no_control(cfg.region, "region")
    factory = _FACTORIES.get(parsed.scheme)
    if factory is None:
        raise ConfigError(f"no backend for {parsed.scheme}:// remotes")
    return factory(cfg, parsed, jobs)


def parse_size(value: object, what: str) -> int:
    """``16777216``, ``"16MiB"``, ``"64MB"`` → bytes."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a size, not {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?|B)?\s*", value, re.IGNORECASE)
        if not m:
            raise ConfigError(f"{what} must be a size such as 16MiB, not {value!r}")
        unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
        n = int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]
    else:
        raise ConfigError(f"{what} must be a size, not {value!r}")
    if n <= 0:
        raise ConfigError(f"{what} must be positive")
    return n


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: throttling, 5xx, dropped connections, timeouts."""
    return isinstance(exc, (RemoteTransient, ConnectionError, TimeoutError))


__all__ += [
    "MANIFESTS_PREFIX",
    "OBJECTS_PREFIX",
    "REPOS_PREFIX",
    "ParsedUrl",
    "check_endpoint",
    "check_key",
    "is_transient",
    "register_scheme",
]
