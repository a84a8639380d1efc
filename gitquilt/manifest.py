"""Manifests: the listing of one package, its canonical text (v1) and its top hash.

A manifest is held column-wise (a list of keys, one bytes object of raw digests, an
array of sizes) so that a million entries fit in about 150 MB; :class:`Entry` tuples
are made on demand. The canonical text is specified in docs/FORMAT.md.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from array import array
from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from typing import Any, NamedTuple

from gitquilt.digest import check_digest
from gitquilt.errors import AmbiguousPrefix, FormatError, NotFound, UnsafePath, UsageError
from gitquilt.keys import check_key, check_sorted_unique, parent_dirs

FORMAT_VERSION = 1
HEADER = b"gitquilt-manifest 1\n"
EMPTY_META = "{}"
#: The Parquet manifest's file-level metadata key holding the package metadata.
PARQUET_META_KEY = b"gitquilt.meta"
MIN_PREFIX = 7


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (non-ASCII kept as is)."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")  # a lone surrogate ("\ud800") has no UTF-8 form
    except (TypeError, ValueError) as exc:
        raise FormatError(f"metadata is not representable as JSON: {exc}") from None
    return text


def check_canonical_json(text: str, what: str) -> str:
    """Return ``text`` if it is the canonical JSON form of a JSON object."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        raise FormatError(f"{what} is not valid JSON: {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise FormatError(f"{what} must be a JSON object: {text[:80]!r}")
    if canonical_json(value) != text:
        raise FormatError(f"{what} is not in canonical JSON form: {text[:80]!r}")
    return text


class Entry(NamedTuple):
    """One file of a package."""

    key: str
    sha256: str
    size: int
    executable: bool = False
    meta: str = EMPTY_META

    def canonical_line(self) -> bytes:
        return (
            f"{self.key}\t{self.sha256}\t{self.size}\t{'x' if self.executable else '-'}\t{self.meta}\n"
        ).encode()


def check_no_file_dir_clash(keys: Sequence[str]) -> None:
    """Refuse a key that is also a directory of another key (``a`` and ``a/b``)."""
    clash = set(keys) & parent_dirs(keys)
    if clash:
        name = min(clash)
        raise UnsafePath(f"logical key {name!r} is both a file and a directory: the manifest is corrupt")


_KEY = attrgetter("key")


def _all_plain(keys: list[str]) -> bool:
    """True when every key is printable ASCII of at most 255 characters without ':',
    "git", a backslash, or an empty, '.' or '..' segment: valid without a closer look
    (what keys.check_key accepts at once), tested over all keys together. False means
    only that each key must be checked on its own."""
    if not keys:
        return True
    text = "\n".join(keys)
    if text.count("\n") != len(keys) - 1:  # a key holding a newline
        return False
    if not text.isascii() or not text.replace("\n", " ").isprintable():
        return False
    if max(map(len, keys)) > 255:
        return False
    if ":" in text or "\\" in text or "git" in text.lower():
        return False
    # one path of all segments: "//" is an empty key or segment, or a leading or trailing '/'
    path = "/" + text.replace("\n", "/") + "/"
    return "//" not in path and "/./" not in path and "/../" not in path


def _raw_digests(hexes: list[Any]) -> bytes | None:
    """The 32-byte digests of a list of 64-character lowercase hex strings, else None."""
    try:
        if hexes and set(map(len, hexes)) != {64}:
            return None
        text = "".join(hexes)
    except TypeError:
        return None
    if not text.isascii() or text.lower() != text:  # unhexlify would take upper case
        return None
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        return None


def _sizes(values: list[Any]) -> array[int] | None:
    """The sizes as an int64 array, or None when one is not a non-negative integer."""
    if not set(map(type, values)) <= {int, bool}:  # array() would take numpy integers too
        return None
    try:
        sizes = array("q", values)
    except OverflowError:
        return None
    return sizes if not values or min(sizes) >= 0 else None


def _checked_columns(items: list[Entry]) -> tuple[bytes, array[int]]:
    """Digests and sizes entry by entry, raising on the first invalid one."""
    digests = bytearray()
    sizes = array("q")
    for e in items:
        digests += bytes.fromhex(check_digest(e.sha256, f"hash of {e.key!r}"))
        if not isinstance(e.size, int) or not 0 <= e.size < 1 << 63:  # int64, as Parquet stores it
            raise FormatError(f"invalid size {e.size!r} for {e.key!r}")
        sizes.append(e.size)
    return bytes(digests), sizes


class Manifest:
    """An immutable, validated package listing sorted by the UTF-8 bytes of its keys."""

    __slots__ = ("meta", "keys", "_digests", "sizes", "_exec", "_metas", "_index", "_top_hash")

    def __init__(
        self,
        keys: list[str],
        digests: bytes,
        sizes: array[int],
        executable: bytes | bytearray,
        metas: list[str] | None,
        meta: dict[str, Any],
        top_hash: str | None = None,
    ) -> None:
        """Build from validated columns; use :meth:`from_entries` for untrusted input."""
        self.keys = keys
        self._digests = bytes(digests)
        self.sizes = sizes
        self._exec = bytes(executable)
        self._metas = metas
        self.meta = meta
        self._index: dict[str, int] | None = None
        self._top_hash = top_hash

    @classmethod
    def from_entries(cls, entries: Iterable[Entry], meta: dict[str, Any] | None = None) -> "Manifest":
        """Validate and sort entries into a manifest."""
        items = list(entries)
        try:
            # str order is code point order, which UTF-8 keeps (surrogates too, with
            # surrogatepass): sorting the keys as str sorts them by their UTF-8 bytes
            items.sort(key=_KEY)
        except TypeError:  # a key that is not a str: check_key says which
            for e in items:
                check_key(e.key)
            raise
        keys = [e.key for e in items]
        if not _all_plain(keys):
            keys = [check_key(k) for k in keys]
        key_set = set(keys)
        if len(key_set) != len(keys):
            check_sorted_unique(keys)  # names the duplicate
        clash = key_set & parent_dirs(keys)
        if clash:
            raise UnsafePath(f"logical key {min(clash)!r} is both a file and a directory: the manifest is corrupt")
        digests = _raw_digests([e.sha256 for e in items])
        sizes = _sizes([e.size for e in items])
        if digests is None or sizes is None:  # the slow way, to name the first bad entry
            digests, sizes = _checked_columns(items)
        execs = bytes([1 if e.executable else 0 for e in items])
        metas = [e.meta for e in items]
        any_meta = False
        for e in items:
            if e.meta != EMPTY_META:
                check_canonical_json(e.meta, f"meta of {e.key!r}")
                any_meta = True
        package_meta = dict(meta or {})
        canonical_json(package_meta)
        return cls(keys, digests, sizes, execs, metas if any_meta else None, package_meta)

    # -- access -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    def sha256(self, i: int) -> str:
        return self._digests[32 * i : 32 * i + 32].hex()

    def entry(self, i: int) -> Entry:
        return Entry(
            self.keys[i],
            self.sha256(i),
            self.sizes[i],
            bool(self._exec[i]),
            EMPTY_META if self._metas is None else self._metas[i],
        )

    def __iter__(self) -> Iterator[Entry]:
        for i in range(len(self.keys)):
            yield self.entry(i)

    def get(self, key: str) -> Entry | None:
        """The entry for ``key``, or None."""
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.keys)}
        i = self._index.get(key)
        return None if i is None else self.entry(i)

    def digests(self) -> set[str]:
        """The distinct fragment hashes this manifest references."""
        raw = self._digests
        return {raw[i : i + 32].hex() for i in range(0, len(raw), 32)}

    @property
    def total_size(self) -> int:
        return sum(self.sizes)

    @property
    def executable_flags(self) -> bytes:
        return self._exec

    @property
    def entry_metas(self) -> list[str] | None:
        """Per-entry canonical JSON, or None when every entry has ``{}``."""
        return self._metas

    @property
    def raw_digests(self) -> bytes:
        return self._digests

    # -- canonical form -------------------------------------------------------------
    def canonical_text(self) -> bytes:
        """The canonical text v1 (docs/FORMAT.md) whose SHA-256 is the top hash."""
        return b"".join(self._canonical_chunks())

    def _canonical_chunks(self) -> Iterator[bytes]:
        yield HEADER
        yield f"meta\t{canonical_json(self.meta)}\n".encode()
        lines: list[str] = []
        metas = self._metas
        raw = self._digests
        for i, key in enumerate(self.keys):
            lines.append(
                f"{key}\t{raw[32 * i : 32 * i + 32].hex()}\t{self.sizes[i]}\t"
                f"{'x' if self._exec[i] else '-'}\t{EMPTY_META if metas is None else metas[i]}\n"
            )
            if len(lines) >= 4096:
                yield "".join(lines).encode()
                lines = []
        yield "".join(lines).encode()

    @property
    def top_hash(self) -> str:
        """SHA-256 of the canonical text, lowercase hex."""
        if self._top_hash is None:
            h = hashlib.sha256()
            for chunk in self._canonical_chunks():
                h.update(chunk)
            self._top_hash = h.hexdigest()
        return self._top_hash

    def files_fingerprint(self) -> str:
        """SHA-256 over (key, hash, size, executable) of every entry, ignoring metadata.

        Lets ``status`` decide "clean" from the stat cache without reading Parquet.
        """
        return files_fingerprint(self.keys, self._digests, self.sizes, self._exec)


def files_fingerprint(keys: Sequence[str], digests: bytes, sizes: Sequence[int], execs: bytes) -> str:
    """Fingerprint of a file listing; see :meth:`Manifest.files_fingerprint`."""
    h = hashlib.sha256()
    parts: list[str] = []
    for i, key in enumerate(keys):
        parts.append(f"{key}\t{digests[32 * i : 32 * i + 32].hex()}\t{sizes[i]}\t{execs[i]}\n")
        if len(parts) >= 4096:
            h.update("".join(parts).encode())
            parts = []
    h.update("".join(parts).encode())
    return h.hexdigest()


def resolve_prefix(prefix: str, candidates: Iterable[str]) -> str:
    """Resolve a top-hash prefix (at least 7 hex) the way git resolves commit prefixes."""
    p = prefix.lower()
    if len(p) < MIN_PREFIX or len(p) > 64 or any(c not in "0123456789abcdef" for c in p):
        raise UsageError(f"invalid top hash {prefix!r}: give at least {MIN_PREFIX} hex characters")
    matches = sorted({c for c in candidates if c.startswith(p)})
    if not matches:
        raise NotFound(f"no package manifest matches {prefix!r}")
    if len(matches) > 1:
        raise AmbiguousPrefix(f"top hash prefix {prefix!r} is ambiguous: candidates {', '.join(matches)}")
    return matches[0]
